namespace Vfio.Benchmarks.Harness;

/// <summary>
/// What each benchmark case did to the model, recorded at its cleanup. The benchmarks run in this process (see
/// Program), so once BenchmarkDotNet is done the program can refuse a run in which a case did no work or the
/// driver broke a rule of the specification: a fast figure from a benchmark that did nothing is worse than none.
/// </summary>
internal static class Ledger
{
    private static readonly Lock s_lock = new();
    private static readonly List<(string Benchmark, long Work, int Violations)> s_entries = [];

    /// <summary>Records that <paramref name="benchmark"/> made the model do <paramref name="work"/> units (commands, doorbells).</summary>
    public static void Record(string benchmark, long work, int violations)
    {
        lock (s_lock) { s_entries.Add((benchmark, work, violations)); }
    }

    private static readonly List<string> s_failures = [];

    /// <summary>Records a problem a case found in its own cleanup (e.g. a listener that was given nothing).</summary>
    public static void Fail(string problem)
    {
        lock (s_lock) { s_failures.Add(problem); }
    }

    /// <summary>One line per case that did no work, broke a rule or failed its own check; empty when every case is sound.</summary>
    public static List<string> Problems()
    {
        lock (s_lock)
        {
            var problems = new List<string>(s_failures);
            foreach (var (benchmark, work, violations) in s_entries)
            {
                if (work <= 0) { problems.Add($"{benchmark}: the model did no work"); }
                if (violations > 0) { problems.Add($"{benchmark}: the driver broke the NVMe model's rules {violations} times"); }
            }
            return problems;
        }
    }

    public static int Count
    {
        get { lock (s_lock) { return s_entries.Count; } }
    }
}
