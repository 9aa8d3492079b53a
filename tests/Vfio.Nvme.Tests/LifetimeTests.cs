using Vfio.Dma;
using Vfio.Nvme.Tests.Emulation;

namespace Vfio.Nvme.Tests;

/// <summary>
/// Lifetime under failure: 8 threads of random reads and writes, data checked, while the controller is reset or
/// the device is taken back. Every call completes or throws the documented exception, none hangs, no buffer is
/// freed while a command owns it (the model faults on DMA to freed memory, which fails the test), no data is
/// corrupted: a write a reset aborted leaves each block with its old or its new contents, nothing else.
/// </summary>
public sealed class LifetimeTests
{
    private const int Threads = 8, UnitBlocks = 8, UnitsPerThread = 32, UnitBytes = UnitBlocks * 512;

    private static readonly NvmeControllerOptions Options = new() { MinimumReadyTimeout = TimeSpan.FromSeconds(1), MaxIoQueues = 2 };

    /// <summary>
    /// What one thread knows about its blocks: the version each holds, or, after writes a reset aborted, the
    /// versions it may hold: each aborted write may or may not have reached the medium, so two aborted writes to a
    /// block before a read leave three candidates.
    /// </summary>
    private sealed class Model
    {
        public readonly int[] Known = new int[UnitsPerThread * UnitBlocks];
        public readonly List<int>[] Alternatives = Enumerable.Range(0, UnitsPerThread * UnitBlocks).Select(_ => new List<int>()).ToArray();
    }

    private sealed class Outcome
    {
        public long Succeeded, Aborted, Released, Mismatches;
        public readonly List<Exception> Unexpected = [];
    }

    private static void Fill(Span<byte> data, int thread, int unit, int version)
    {
        for (int i = 0; i < data.Length; i++) { data[i] = Pattern(thread, unit * UnitBlocks + i / 512, version, i % 512); }
    }

    private static byte Pattern(int thread, int block, int version, int offset) =>
        version == 0 ? (byte)0 : (byte)(thread * 37 + block * 11 + version * 101 + offset);

    private static bool BlockIs(ReadOnlySpan<byte> block, int thread, int blockIndex, int version)
    {
        for (int i = 0; i < block.Length; i++)
        {
            if (block[i] != Pattern(thread, blockIndex, version, i)) { return false; }
        }
        return true;
    }

    /// <summary>One thread's work: <paramref name="ops"/> random 4 KiB reads and writes on its own blocks.</summary>
    private static async Task Work(NvmeBlockDevice bd, int thread, int ops, Outcome outcome, bool stopOnRelease)
    {
        var model = new Model();
        var rng = new Random(thread * 7919);
        using var dma = bd.AllocateBuffer(UnitBytes);
        var plain = new byte[UnitBytes];
        int version = 0;
        ulong baseLba = (ulong)(thread * UnitsPerThread * UnitBlocks);
        for (int i = 0; i < ops; i++)
        {
            int unit = rng.Next(UnitsPerThread);
            ulong lba = baseLba + (ulong)(unit * UnitBlocks);
            bool write = rng.Next(2) == 0;
            int kind = rng.Next(3);   // 0: DMA memory, 1: ordinary memory (bounced), 2: synchronous call
            var memory = kind == 0 ? dma.Memory : plain.AsMemory();
            int newVersion = ++version;
            try
            {
                if (write)
                {
                    Fill(memory.Span, thread, unit, newVersion);
                    if (kind == 2) { bd.Write(lba, memory.Span); }
                    else { await bd.WriteAsync(lba, memory, TestContext.Current.CancellationToken); }
                    for (int b = 0; b < UnitBlocks; b++)
                    {
                        model.Known[unit * UnitBlocks + b] = newVersion;
                        model.Alternatives[unit * UnitBlocks + b].Clear();
                    }
                }
                else
                {
                    memory.Span.Fill(0xA5);
                    if (kind == 2) { bd.Read(lba, memory.Span); }
                    else { await bd.ReadAsync(lba, memory, TestContext.Current.CancellationToken); }
                    for (int b = 0; b < UnitBlocks; b++)
                    {
                        int index = unit * UnitBlocks + b;
                        var block = memory.Span.Slice(b * 512, 512);
                        var alternatives = model.Alternatives[index];
                        if (BlockIs(block, thread, index, model.Known[index])) { alternatives.Clear(); continue; }
                        int found = -1;
                        for (int a = 0; a < alternatives.Count && found < 0; a++)
                        {
                            if (BlockIs(block, thread, index, alternatives[a])) { found = a; }
                        }
                        if (found >= 0)
                        {
                            model.Known[index] = alternatives[found];
                            alternatives.Clear();
                        }
                        else { Interlocked.Increment(ref outcome.Mismatches); }
                    }
                }
                Interlocked.Increment(ref outcome.Succeeded);
            }
            catch (NvmeCommandAbortedException)
            {
                Interlocked.Increment(ref outcome.Aborted);
                if (write)
                {
                    // Each block holds the old or the new version; the reads that follow tell which.
                    for (int b = 0; b < UnitBlocks; b++)
                    {
                        int index = unit * UnitBlocks + b;
                        model.Alternatives[index].Add(model.Known[index]);
                        model.Known[index] = newVersion;
                    }
                }
            }
            catch (DeviceReleasedException) when (stopOnRelease)
            {
                Interlocked.Increment(ref outcome.Released);
                if (i % 3 == 0) { return; }   // some threads stop at once, others keep calling: each call must throw
            }
            catch (Exception e)
            {
                lock (outcome.Unexpected) { outcome.Unexpected.Add(e); }
                return;
            }
        }
        Assert.False(dma.IsInUse);
    }

    [Theory(Timeout = 300_000)]
    [InlineData(false, 10_000)]
    [InlineData(true, 300)]
    public async Task ResetsDuringRandomReadsAndWritesOnEightThreads(bool deferred, int opsPerThread)
    {
        using var dev = new EmulatedNvme();
        dev.Deferred = deferred;   // deferred: completions come from the model's thread, so commands are really in flight
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c);
        var outcome = new Outcome();
        var workers = Enumerable.Range(0, Threads)
            .Select(t => Task.Run(() => Work(bd, t, opsPerThread, outcome, stopOnRelease: false), TestContext.Current.CancellationToken)).ToArray();
        int resets = 0;
        var all = Task.WhenAll(workers);
        while (!all.IsCompleted)
        {
            await Task.Delay(deferred ? 20 : 5, TestContext.Current.CancellationToken);
            if (all.IsCompleted) { break; }
            c.Reset();
            resets++;
        }
        await all;
        TestContext.Current.SendDiagnosticMessage($"deferred={deferred}: {resets} resets, {outcome.Succeeded} ok, {outcome.Aborted} aborted by a reset");
        Assert.Empty(outcome.Unexpected);
        Assert.Equal(0, outcome.Mismatches);
        Assert.True(resets >= 2, $"only {resets} resets happened during the run");
        Assert.Equal(Threads * opsPerThread, outcome.Succeeded + outcome.Aborted);
        if (deferred) { Assert.True(outcome.Aborted > 0, "no command was in flight at any reset"); }
        Assert.All(bd.Queues, q => Assert.Equal(0, q.Outstanding));
        // The controller is healthy afterwards.
        var check = new byte[4096];
        await bd.ReadAsync(0, check, TestContext.Current.CancellationToken);
    }

    [Theory(Timeout = 300_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AnUnplugDuringRandomReadsAndWritesOnEightThreads(bool deferred)
    {
        using var dev = new EmulatedNvme();
        dev.Deferred = deferred;
        var c = NvmeController.Open(dev, Options);
        var bd = NvmeBlockDevice.Open(c);
        var outcome = new Outcome();
        var workers = Enumerable.Range(0, Threads)
            .Select(t => Task.Run(() => Work(bd, t, deferred ? 2_000 : 10_000, outcome, stopOnRelease: true), TestContext.Current.CancellationToken)).ToArray();
        SpinWait.SpinUntil(() => Interlocked.Read(ref outcome.Succeeded) > (deferred ? 200 : 5_000), TimeSpan.FromSeconds(60));
        dev.RequestRelease();
        await Task.WhenAll(workers);
        Assert.True(c.Released.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)));
        SpinWait.SpinUntil(() => c.ReleaseDuration is not null, TimeSpan.FromSeconds(30));
        TestContext.Current.SendDiagnosticMessage($"deferred={deferred}: {outcome.Succeeded} ok before the unplug, {outcome.Released} calls got DeviceReleasedException");
        Assert.Empty(outcome.Unexpected);
        Assert.Equal(0, outcome.Mismatches);
        Assert.True(outcome.Released >= Threads);
        Assert.True(dev.Closed);
        Assert.Equal(0, dev.Allocator!.LiveBuffers);   // every worker buffer disposed, the driver's memory freed
        await Assert.ThrowsAsync<DeviceReleasedException>(async () => await bd.ReadAsync(0, new byte[512], TestContext.Current.CancellationToken));
        bd.Dispose();
        c.Dispose();
    }
}
