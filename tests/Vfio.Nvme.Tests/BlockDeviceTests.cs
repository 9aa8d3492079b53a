using System.Security.Cryptography;
using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;

namespace Vfio.Nvme.Tests;

/// <summary>Allocation measurements read a process-wide counter: nothing else may run meanwhile.</summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// <see cref="NvmeBlockDevice"/> against the emulated controller: many threads at once over several queues, data
/// checked, DMA and ordinary memory, backpressure, cancellation, completion modes, and the Stream adapter.
/// </summary>
public sealed class BlockDeviceTests
{
    private static readonly NvmeControllerOptions Options = new() { MinimumReadyTimeout = TimeSpan.FromSeconds(1) };


    internal static EmulatedNvme NewDevice(ulong blocks = 16384, int maxQueues = 4) =>
        new(NvmeTransport.InProcess, new NvmeDeviceOptions { BlockSize = 512, BlockCount = blocks, MaxIoQueues = maxQueues });

    [Fact(Timeout = 120_000)]
    public async Task ManyThreadsOverTwoQueuesReadBackWhatTheyWrote()
    {
        using var dev = NewDevice();
        using var c = NvmeController.Open(dev, Options with { MaxIoQueues = 2 });
        using var bd = NvmeBlockDevice.Open(c);
        Assert.Equal(2, bd.Queues.Count);
        var workers = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            using var dma = bd.AllocateBuffer(4096);
            var plain = new byte[4096];
            for (int i = 0; i < 200; i++)
            {
                ulong lba = (ulong)(w * 256 + i % 32 * 8);
                bool useDma = i % 2 == 0;
                var data = useDma ? dma.Memory : plain.AsMemory();
                Fill(data.Span, w, i);
                await bd.WriteAsync(lba, data, TestContext.Current.CancellationToken);
                data.Span.Clear();
                await bd.ReadAsync(lba, data, TestContext.Current.CancellationToken);
                Assert.True(Matches(data.Span, w, i), $"worker {w} op {i} read back other data");
            }
        }, TestContext.Current.CancellationToken)).ToArray();
        await Task.WhenAll(workers);
        Assert.All(bd.Queues, q => Assert.True(q.OperationsCompleted > 0, $"queue {q.QueueId} was never used"));
        Assert.True(bd.Queues.Sum(q => q.BouncedOperations) >= 8 * 200 / 2);
    }

    [Fact(Timeout = 60_000)]
    public async Task MoreOperationsThanSlotsWaitInsteadOfFailing()
    {
        using var dev = NewDevice();
        dev.Deferred = true;   // completions come later, so the three slots really fill up
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1, QueueEntries = 4 });
        using var buf = bd.AllocateBuffer(64 * 4096);
        var ops = Enumerable.Range(0, 64).Select(i => bd.ReadAsync((ulong)i * 8, buf.Memory.Slice(i * 4096, 4096), TestContext.Current.CancellationToken).AsTask()).ToArray();
        Assert.True(bd.Queues[0].Outstanding <= 3);
        await Task.WhenAll(ops);
        Assert.Equal(64, bd.Queues[0].OperationsCompleted);
        Assert.False(buf.IsInUse);
    }

    [Fact(Timeout = 60_000)]
    public async Task ATransferLargerThanOneCommandIsSplitAndCorrect()
    {
        using var dev = NewDevice();
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        int bytes = 4 * c.MaxTransferBytes + 4096;
        using var buf = bd.AllocateBuffer(bytes);
        RandomNumberGenerator.Fill(buf.Span);
        var expected = buf.Span.ToArray();
        await bd.WriteAsync(100, buf.Memory, TestContext.Current.CancellationToken);
        buf.Span.Clear();
        await bd.ReadAsync(100, buf.Memory, TestContext.Current.CancellationToken);
        Assert.True(expected.AsSpan().SequenceEqual(buf.Span));
        // Ordinary memory of the same size goes through bounce buffers in pieces.
        var plain = new byte[bytes];
        await bd.ReadAsync(100, plain, TestContext.Current.CancellationToken);
        Assert.True(expected.AsSpan().SequenceEqual(plain));
        Assert.Equal(expected.AsSpan(0, 512).ToArray(), dev.Disk.Slice(100 * 512, 512).ToArray());
    }

    [Fact(Timeout = 60_000)]
    public async Task FlushWriteZeroesAndDeallocateWork()
    {
        using var dev = NewDevice();
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c);
        var data = new byte[8192];
        data.AsSpan().Fill(0xEE);
        await bd.WriteAsync(0, data, TestContext.Current.CancellationToken);
        await bd.FlushAsync(TestContext.Current.CancellationToken);
        await bd.WriteZeroesAsync(0, 8, TestContext.Current.CancellationToken);
        await bd.ReadAsync(0, data, TestContext.Current.CancellationToken);
        Assert.All(data[..4096], b => Assert.Equal(0, b));
        Assert.All(data[4096..], b => Assert.Equal(0xEE, b));
        await bd.DeallocateAsync(8, 8, TestContext.Current.CancellationToken);
        await Assert.ThrowsAsync<ArgumentException>(async () => await bd.ReadAsync(0, new byte[100], TestContext.Current.CancellationToken));
    }

    [Fact(Timeout = 60_000)]
    public async Task CancellingAnOperationInFlightAnswersAtOnceAndKeepsTheBufferLeasedUntilTheDeviceCompletes()
    {
        using var dev = NewDevice();
        dev.Deferred = true;
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        using var buf = bd.AllocateBuffer(4096);
        dev.Stalled = true;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var op = bd.ReadAsync(0, buf.Memory, cts.Token).AsTask();
        SpinWait.SpinUntil(() => bd.Queues[0].Outstanding == 1, TimeSpan.FromSeconds(10));
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => op);
        Assert.True(buf.IsInUse);                                   // the device may still write it
        Assert.Throws<InvalidOperationException>(() => buf.Dispose());
        Assert.Equal(1, bd.Queues[0].Outstanding);                  // the slot is not reclaimed yet
        dev.Stalled = false;
        SpinWait.SpinUntil(() => !buf.IsInUse, TimeSpan.FromSeconds(10));
        Assert.False(buf.IsInUse);
        Assert.Equal(0, bd.Queues[0].Outstanding);
        // The queue goes on.
        await bd.ReadAsync(0, buf.Memory, TestContext.Current.CancellationToken);
    }

    [Fact(Timeout = 60_000)]
    public async Task CancellingAnOperationWaitingForASlotDropsIt()
    {
        using var dev = NewDevice();
        dev.Deferred = true;
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1, QueueEntries = 2 });
        using var buf = bd.AllocateBuffer(8192);
        dev.Disk[..8192].Fill(0x11);
        buf.Span.Fill(0xCC);
        dev.Stalled = true;
        var first = bd.ReadAsync(0, buf.Memory[..4096], TestContext.Current.CancellationToken).AsTask();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var second = bd.ReadAsync(8, buf.Memory[4096..], cts.Token).AsTask();
        Assert.False(second.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second);
        dev.Stalled = false;
        await first;
        Assert.Equal(0x11, buf.Span[0]);
        Assert.Equal(0xCC, buf.Span[4096]);                         // the second never reached the device
        Assert.Equal(1, bd.Queues[0].SubmissionDoorbellWrites);
        Assert.False(buf.IsInUse);
    }

    [Theory(Timeout = 60_000)]
    [InlineData(NvmeCompletionMode.Interrupt)]
    [InlineData(NvmeCompletionMode.Hybrid)]
    [InlineData(NvmeCompletionMode.Polled)]
    public async Task EveryCompletionModeCompletesWork(NvmeCompletionMode mode)
    {
        using var dev = NewDevice();
        dev.Deferred = true;    // completions arrive from the model's thread, after the submitter returned
        using var c = NvmeController.Open(dev, Options with { EnableMsix = true, MaxIoQueues = 2 });
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { CompletionMode = mode, HybridSpin = TimeSpan.FromMicroseconds(20) });
        using var buf = bd.AllocateBuffer(4096);
        for (int i = 0; i < 20; i++)
        {
            Fill(buf.Span, 1, i);
            await bd.WriteAsync((ulong)i * 8, buf.Memory, TestContext.Current.CancellationToken);
            buf.Span.Clear();
            await bd.ReadAsync((ulong)i * 8, buf.Memory, TestContext.Current.CancellationToken);
            Assert.True(Matches(buf.Span, 1, i));
        }
        long wakeups = bd.Queues.Sum(q => q.InterruptWakeups);
        if (mode == NvmeCompletionMode.Polled) { Assert.Equal(0, wakeups); }
        else { Assert.True(wakeups > 0, $"{mode}: the completion thread never woke on the vector"); }
    }

    [Fact]
    public void InterruptModeWithoutMsixIsRefused()
    {
        using var dev = NewDevice();
        using var c = NvmeController.Open(dev, Options);
        var e = Assert.Throws<InvalidOperationException>(() => NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { CompletionMode = NvmeCompletionMode.Interrupt }));
        Assert.Contains("EnableMsix", e.Message);
    }

    [Fact(Timeout = 60_000)]
    public async Task TheStreamReadsWritesAndSeeksAtAnyOffset()
    {
        using var dev = NewDevice(blocks: 2048);
        using var c = NvmeController.Open(dev, Options);
        using var bd = NvmeBlockDevice.Open(c);
        using var s = bd.OpenStream();
        Assert.Equal(2048 * 512, s.Length);
        var data = new byte[300_001];
        RandomNumberGenerator.Fill(data);
        s.Position = 777;                                   // unaligned start and end: read-modify-write at both ends
        s.Write(data);
        Assert.Equal(777 + data.Length, s.Position);
        Assert.Equal(data.AsSpan(0, 100).ToArray(), dev.Disk.Slice(777, 100).ToArray());
        Assert.Equal(0, dev.Disk[776]);                      // bytes before the range kept
        s.Seek(777, SeekOrigin.Begin);
        var back = new byte[data.Length];
        s.ReadExactly(back);
        Assert.Equal(data, back);
        // Existing .NET code: a hash over a copy loop.
        s.Position = 777;
        using var window = new MemoryStream();
        await s.CopyToAsync(window, TestContext.Current.CancellationToken);
        Assert.Equal(2048 * 512 - 777, window.Length);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(window.GetBuffer().AsSpan(0, data.Length)));
        // Aligned asynchronous calls go straight to the device.
        s.Position = 4096;
        await s.WriteAsync(data.AsMemory(0, 8192), TestContext.Current.CancellationToken);
        s.Position = 4096;
        var aligned = new byte[8192];
        Assert.Equal(8192, await s.ReadAsync(aligned, TestContext.Current.CancellationToken));
        Assert.Equal(data[..8192], aligned);
        s.Seek(-10, SeekOrigin.End);
        Assert.Equal(10, s.Read(new byte[100]));
        Assert.Equal(0, s.Read(new byte[100]));
        Assert.Throws<IOException>(() => s.Write(new byte[11]));
        Assert.Throws<NotSupportedException>(() => s.SetLength(5));
        Assert.Throws<IOException>(() => s.Seek(-1, SeekOrigin.Begin));
        s.Flush();
    }

    internal static void Fill(Span<byte> data, int worker, int version)
    {
        for (int i = 0; i < data.Length; i++) { data[i] = (byte)(worker * 31 + version * 7 + i / 512 * 3 + i); }
    }

    internal static bool Matches(ReadOnlySpan<byte> data, int worker, int version)
    {
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] != (byte)(worker * 31 + version * 7 + i / 512 * 3 + i)) { return false; }
        }
        return true;
    }
}

/// <summary>Steady-state allocation of the asynchronous API, alone in the process while it measures.</summary>
[Collection(nameof(AllocationCollection))]
public sealed class BlockDeviceAllocationTests
{

    [Theory(Timeout = 120_000)]
    [InlineData(true)]
    [InlineData(false)]
    public async Task HundredThousandAsyncIosAllocateNothing(bool dmaMemory)
    {
        using var dev = BlockDeviceTests.NewDevice();
        using var c = NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1), MaxIoQueues = 2 });
        using var bd = NvmeBlockDevice.Open(c);
        const int Workers = 16, Warmup = 20_000, Measured = 100_000;
        long done = 0;
        using var buf = bd.AllocateBuffer(Workers * 4096);
        var plain = new byte[Workers * 4096];
        bool stop = false;
        async Task Worker(int w)
        {
            var memory = dmaMemory ? buf.Memory.Slice(w * 4096, 4096) : plain.AsMemory(w * 4096, 4096);
            ulong lba = (ulong)w * 8;
            while (!Volatile.Read(ref stop))
            {
                await bd.ReadAsync(lba, memory, TestContext.Current.CancellationToken);
                await bd.WriteAsync(lba + 1024, memory, TestContext.Current.CancellationToken);
                Interlocked.Add(ref done, 2);
            }
        }
        var tasks = Enumerable.Range(0, Workers).Select(w => Task.Run(() => Worker(w), TestContext.Current.CancellationToken)).ToArray();
        SpinWait.SpinUntil(() => Interlocked.Read(ref done) >= Warmup);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        long start = Interlocked.Read(ref done);
        SpinWait.SpinUntil(() => Interlocked.Read(ref done) >= start + Measured);
        long after = GC.GetTotalAllocatedBytes(precise: true);
        long ios = Interlocked.Read(ref done) - start;
        Volatile.Write(ref stop, true);
        await Task.WhenAll(tasks);
        double perIo = (after - before) / (double)ios;
        TestContext.Current.SendDiagnosticMessage($"{(dmaMemory ? "DMA" : "bounced")}: {after - before} bytes over {ios} I/Os ({perIo:F4} per I/O)");
        // Anything allocated per I/O would be at least 24 bytes each: millions over the window. The bound leaves
        // room only for the runtime's own one-off allocations on other threads.
        Assert.True(after - before < 16 * 1024, $"{after - before} bytes allocated over {ios} I/Os ({perIo:F4} per I/O)");
        Assert.True(ios >= Measured);
    }
}

/// <summary>
/// A controller that writes completions against the rules faults the queue with a named exception; a reset recovers.
/// Every <see cref="NvmeMisbehavior"/> runs over every transport (issue 18 item 3): in process, vfio-user with memfd
/// DMA, vfio-user with DMA_READ/DMA_WRITE messages.
/// </summary>
public abstract class CompletionValidationTests(NvmeTransport transport)
{
    public static TheoryData<NvmeMisbehavior, string> Modes() => new()
    {
        { NvmeMisbehavior.UnknownCommandId, "not outstanding" },
        { NvmeMisbehavior.SubmissionHeadOutOfRange, "SQHD" },
        { NvmeMisbehavior.WrongSubmissionQueue, "SQID" },
        { NvmeMisbehavior.DuplicateCompletion, "not outstanding" },
        { NvmeMisbehavior.ReservedStatusCodeType, "status code type 5h" },
    };

    [Theory(Timeout = 60_000)]
    [MemberData(nameof(Modes))]
    public async Task ARuleBreakingCompletionFaultsTheQueueAndAResetRecovers(NvmeMisbehavior misbehavior, string said)
    {
        var ct = TestContext.Current.CancellationToken;
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions { BlockSize = 512, BlockCount = 16384, MaxIoQueues = 4 });
        using var c = NvmeController.Open(dev, new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        using var buf = bd.AllocateBuffer(4096);
        var pattern = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7 + 1)).ToArray();
        pattern.CopyTo(buf.Span);
        await bd.WriteAsync(0, 8, buf, cancellationToken: ct);
        buf.Span.Clear();
        dev.Model.MisbehaveNextIo = misbehavior;
        var sync = Record.Exception(() => bd.Queues[0].Read(bd.Namespace, 0, 8, buf));
        if (sync is null)
        {
            // Only a duplicate may let the command itself succeed (its first completion was correct); then the data
            // is right and the second copy faults the queue at the latest on the next reap.
            Assert.Equal(NvmeMisbehavior.DuplicateCompletion, misbehavior);
            Assert.Equal(pattern, buf.Span.ToArray());
            var next = await Record.ExceptionAsync(async () => await bd.ReadAsync(0, buf.Memory, ct));
            Assert.True(next is DeviceProtocolViolationException or NvmeControllerFatalException, $"after a duplicate completion: {next}");
        }
        else
        {
            var e = Assert.IsType<DeviceProtocolViolationException>(sync);
            Assert.Contains(said, e.Seen);
        }
        Assert.True(c.IsFaulted);
        // The queue refuses work until a reset; the command's buffer stays leased while the device may still
        // write it (it never completed it in a way the driver accepted) and is released by the reset.
        await Assert.ThrowsAsync<NvmeControllerFatalException>(async () => await bd.ReadAsync(0, buf.Memory, ct));
        c.Reset();
        Assert.False(buf.IsInUse);
        await bd.ReadAsync(0, buf.Memory, ct);
        Assert.Equal(1, bd.Queues[0].StrayCompletions);
    }

    /// <summary>A stale phase tag ends in the command timeout: short here, so those tests stay quick.</summary>
    private static readonly NvmeControllerOptions ShortTimeout = new()
    {
        MinimumReadyTimeout = TimeSpan.FromSeconds(1),
        CommandTimeout = TimeSpan.FromMilliseconds(300),
    };

    /// <summary>
    /// A completion written with a stale phase tag is invisible, so the command times out with a named exception,
    /// its buffer stays leased while the device might still write it, and a reset ends both.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task AStalePhaseCompletionTimesOutAndAResetRecovers()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions { BlockSize = 512, BlockCount = 16384, MaxIoQueues = 4 });
        using var c = NvmeController.Open(dev, ShortTimeout);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        using var buf = bd.AllocateBuffer(4096);
        dev.Model.MisbehaveNextIo = NvmeMisbehavior.StalePhase;
        var e = await Assert.ThrowsAsync<NvmeTimeoutException>(async () => await bd.ReadAsync(0, 8, buf, cancellationToken: ct));
        Assert.Equal(0UL, e.Command.StartingLba);
        Assert.True(c.IsFaulted);
        Assert.True(buf.IsInUse);
        c.Reset();
        Assert.False(buf.IsInUse);
        await bd.ReadAsync(0, 8, buf, cancellationToken: ct);
        Assert.Equal(0, bd.Queues[0].StrayCompletions);
    }

    /// <summary>
    /// A random mix (issue 18 item 3): 300 writes and reads of random blocks, before each a coin decides whether the
    /// controller breaks that command's completion and how. Every call ends in correct data or a named exception,
    /// a fault is recovered by a reset, data a successful read returns is the last data a successful write put
    /// there, and nothing stays leased or hangs.
    /// </summary>
    [Fact(Timeout = 120_000)]
    public async Task ARandomMixOfRuleBreakingCompletionsEndsInCorrectDataOrNamedExceptions()
    {
        var ct = TestContext.Current.CancellationToken;
        var modes = Enum.GetValues<NvmeMisbehavior>().Where(m => m != NvmeMisbehavior.None).ToArray();
        var random = new Random(18);
        using var dev = new EmulatedNvme(transport, new NvmeDeviceOptions { BlockSize = 512, BlockCount = 16384, MaxIoQueues = 4 });
        using var c = NvmeController.Open(dev, ShortTimeout);
        using var bd = NvmeBlockDevice.Open(c, new NvmeBlockDeviceOptions { Queues = 1 });
        using var buf = bd.AllocateBuffer(4096);
        var written = new Dictionary<ulong, byte>();   // 4 KiB unit -> the tag of its last acknowledged write
        var unknown = new HashSet<ulong>();             // units whose last write was not acknowledged
        int violations = 0, resets = 0, verified = 0;
        for (int i = 0; i < 300; i++)
        {
            ulong unit = (ulong)random.Next(16);
            bool write = random.Next(2) == 0;
            var mode = random.Next(3) == 0 ? modes[random.Next(modes.Length)] : NvmeMisbehavior.None;
            byte tag = (byte)random.Next(1, 256);
            if (write) { buf.Span.Fill(tag); } else { buf.Span.Clear(); }
            dev.Model.MisbehaveNextIo = mode;
            var e = await Record.ExceptionAsync(async () =>
            {
                if (write) { await bd.WriteAsync(unit * 8, 8, buf, cancellationToken: ct); }
                else { await bd.ReadAsync(unit * 8, 8, buf, cancellationToken: ct); }
            });
            if (e is null)
            {
                if (write)
                {
                    written[unit] = tag;
                    unknown.Remove(unit);
                }
                else if (!unknown.Contains(unit))
                {
                    byte expected = written.GetValueOrDefault(unit);
                    Assert.True(buf.Span.IndexOfAnyExcept(expected) < 0, $"step {i}: unit {unit} read back other data than tag {expected} (mode {mode})");
                    verified++;
                }
            }
            else
            {
                Assert.True(e is DeviceProtocolViolationException or NvmeControllerFatalException or NvmeTimeoutException, $"step {i} ({mode}): {e}");
                violations++;
                if (write) { unknown.Add(unit); }   // the device may or may not have written it
            }
            // A duplicate can leave its second copy for the next reap: read it now, so that the next step starts clean.
            if (!c.IsFaulted && mode == NvmeMisbehavior.DuplicateCompletion)
            {
                var next = await Record.ExceptionAsync(async () => await bd.ReadAsync(unit * 8, 8, buf, cancellationToken: ct));
                Assert.True(next is null or DeviceProtocolViolationException or NvmeControllerFatalException, $"step {i}: {next}");
            }
            if (c.IsFaulted)
            {
                c.Reset();
                resets++;
                Assert.False(buf.IsInUse, $"step {i}: the buffer is still leased after the reset");
            }
        }
        Assert.True(violations > 0 && resets > 0 && verified > 0, $"{violations} violations, {resets} resets, {verified} verified reads");
        Assert.False(buf.IsInUse);
    }
}

public sealed class InProcessCompletionValidationTests() : CompletionValidationTests(NvmeTransport.InProcess);

public sealed class SocketCompletionValidationTests() : CompletionValidationTests(NvmeTransport.Socket);

public sealed class SocketMessageDmaCompletionValidationTests() : CompletionValidationTests(NvmeTransport.SocketMessages);
