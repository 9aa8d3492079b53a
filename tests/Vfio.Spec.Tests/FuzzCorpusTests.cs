using Vfio.Fuzz;

namespace Vfio.Spec.Tests;

/// <summary>
/// Keeps the fuzz harnesses (tests/Vfio.Fuzz, linked in) and their committed corpus from rotting: every seed, and a
/// fixed-seed batch of mutations of each, goes through the same harness code afl-fuzz runs. A harness throws only
/// for input its parser does not document as rejectable, so any exception here is a parser bug. Crashes afl-fuzz
/// finds go into tests/Vfio.Fuzz/corpus/TARGET/ as files and are replayed here from then on.
/// </summary>
public sealed class FuzzCorpusTests
{
    private static readonly string CorpusRoot = Path.Combine(AppContext.BaseDirectory, "fuzz-corpus");

    public static TheoryData<string> Targets() => [.. FuzzTargets.All.Keys];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Every_harness_has_a_seed_corpus_and_replays_it_without_a_crash(string target)
    {
        var dir = Path.Combine(CorpusRoot, target);
        Assert.True(Directory.Exists(dir), $"no seed corpus for {target} in {dir}");
        Assert.True(FuzzTargets.Replay(FuzzTargets.All[target], dir) > 0, $"the seed corpus of {target} is empty");
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Mutated_seeds_are_accepted_or_rejected_as_documented(string target)
    {
        var harness = FuzzTargets.All[target];
        var random = new Random(18);
        foreach (var file in Directory.EnumerateFiles(Path.Combine(CorpusRoot, target)).Order(StringComparer.Ordinal))
        {
            var seed = File.ReadAllBytes(file);
            for (int round = 0; round < 200; round++)
            {
                var input = Mutate(seed, random);
                harness(input);
            }
        }
    }

    /// <summary>Flips bytes, truncates or extends: the cheap part of what afl-fuzz does, deterministically.</summary>
    private static byte[] Mutate(byte[] seed, Random random)
    {
        var b = random.Next(8) switch
        {
            0 => seed[..random.Next(seed.Length + 1)],
            1 => [.. seed, .. new byte[random.Next(1, 64)]],
            _ => (byte[])seed.Clone(),
        };
        for (int i = random.Next(1, 9); i > 0 && b.Length > 0; i--) { b[random.Next(b.Length)] = (byte)random.Next(256); }
        return b;
    }
}
