using Vfio.Devices;
using Vfio.Dma;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>The driver against the in-process emulated controller (direct calls into the model).</summary>
public sealed class InProcessControllerTests() : ControllerTests(NvmeTransport.InProcess);

/// <summary>The driver against the same model served over a vfio-user socket, DMA memory shared by memfd.</summary>
public sealed class SocketControllerTests() : ControllerTests(NvmeTransport.Socket);

/// <summary>The driver over a vfio-user socket with DMA memory mapped without an fd: every DMA is a DMA_READ/DMA_WRITE message.</summary>
public sealed class SocketMessageDmaControllerTests() : ControllerTests(NvmeTransport.SocketMessages);

/// <summary>
/// The driver against the emulated NVMe controller (Vfio.Emulation's NvmeDevice), through IPciDevice like real
/// hardware; each test runs on every transport.
/// </summary>
public abstract class ControllerTests(NvmeTransport transport)
{
    private EmulatedNvme New(int blockSize = 512, ulong blocks = 8192, int doorbellStride = 0, OptionalNvmCommands? oncs = null) =>
        new(transport, new NvmeDeviceOptions
        {
            BlockSize = blockSize,
            BlockCount = blocks,
            DoorbellStride = doorbellStride,
            Oncs = oncs ?? new NvmeDeviceOptions().Oncs,
        });

    private void RequireInProcess(string why) => Assert.SkipUnless(transport == NvmeTransport.InProcess, why);

    /// <summary>
    /// Bytes this thread allocates in <paramref name="window"/>, the least of three runs. Any allocation per command
    /// shows in every run; a one-off lazy allocation by the runtime on this thread does not fail the test (under CPU
    /// load one run in three of the batch test saw 1.6-4 KiB appear once; its source is not in the driver or the
    /// model, whose locks were ruled out).
    /// </summary>
    private static long LeastAllocatedOverWindows(Action window)
    {
        long least = long.MaxValue;
        for (int run = 0; run < 3 && least != 0; run++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            window();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }

    private static NvmeController Open(EmulatedNvme dev, NvmeControllerOptions? options = null) =>
        NvmeController.Open(dev, options ?? new NvmeControllerOptions { MinimumReadyTimeout = TimeSpan.FromSeconds(1) });

    private static void Fill(DmaBuffer b, int seed)
    {
        var r = new Random(seed);
        r.NextBytes(b.Span);
    }

    [Fact]
    public void BringUpIdentifiesControllerAndNamespace()
    {
        using var dev = New();
        using (var c = Open(dev))
        {
            Assert.Equal("Emulated NVMe Ctrl", c.Identity.ModelNumber);
            Assert.Equal("EMU-0001", c.Identity.SerialNumber);
            Assert.Equal("1.4.0", c.Version.ToString());
            var ns = Assert.Single(c.Namespaces);
            Assert.Equal(1u, ns.Id);
            Assert.Equal(512, ns.BlockSize);
            Assert.Equal(8192UL, ns.BlockCount);
            Assert.Equal(4, c.GrantedIoQueues);
            Assert.Equal(128 * 1024, c.MaxTransferBytes);
            Assert.True(dev.Config.BusMaster);
            Assert.True(dev.Config.MemorySpace);
            Assert.Equal(transport == NvmeTransport.InProcess ? DeviceBackend.Emulated : DeviceBackend.VfioUser, dev.Backend);
        }
        if (dev.Allocator is { } fake) { Assert.Equal(0, fake.LiveBuffers); }
    }

    [Theory]
    [InlineData(512, 1)]
    [InlineData(512, 8)]
    [InlineData(512, 16)]        // 2 pages
    [InlineData(512, 24)]        // 3 pages: a PRP list
    [InlineData(512, 2048)]      // 1 MiB: split by MDTS (128 KiB) into 8 commands, one doorbell
    [InlineData(4096, 1)]
    [InlineData(4096, 3)]
    [InlineData(4096, 256)]
    public void WrittenDataReadsBack(int blockSize, int blocks)
    {
        using var dev = New(blockSize: blockSize, blocks: 4096);
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        ulong bytes = (ulong)(blocks * blockSize);
        using var data = dev.Dma.Allocate(bytes, new DmaAllocationOptions { Contiguous = false });
        using var back = dev.Dma.Allocate(bytes, new DmaAllocationOptions { Contiguous = false });
        Fill(data, blocks);
        int before = dev.SubmissionDoorbells(q.QueueId);
        q.Write(ns, 7, blocks, data);
        Assert.Equal(before + 1, dev.SubmissionDoorbells(q.QueueId));
        Assert.Equal(data.Span[..(int)bytes].ToArray(), dev.Disk.Slice(7 * blockSize, (int)bytes).ToArray());
        q.Read(ns, 7, blocks, back);
        Assert.Equal(data.Span[..(int)bytes].ToArray(), back.Span[..(int)bytes].ToArray());
    }

    [Fact]
    public void ScatteredBuffersAndOffsetsGoThroughPrpLists()
    {
        using var dev = New();
        dev.Allocator?.Scatter = true;     // over a socket the client allocates; PRP lists are needed either way
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var data = dev.Dma.Allocate(64 * 1024, new DmaAllocationOptions { Contiguous = false });
        using var back = dev.Dma.Allocate(64 * 1024, new DmaAllocationOptions { Contiguous = false });
        Fill(data, 3);
        q.Write(ns, 100, 100, data, offset: 512);       // starts mid-page, 50 KiB over 13 scattered pages
        q.Read(ns, 100, 100, back, offset: 1024);
        Assert.Equal(data.Span.Slice(512, 51200).ToArray(), back.Span.Slice(1024, 51200).ToArray());
        Assert.True(dev.MaxPrpListEntries >= 12);
    }

    [Fact]
    public void OutOfRangeLbaIsAnNvmeErrorAndTheQueueGoesOn()
    {
        using var dev = New(blocks: 1024);
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        var e = Assert.Throws<NvmeCommandException>(() => q.Read(ns, 1020, 8, buf));
        Assert.Equal(StatusCodeType.Generic, e.StatusCodeType);
        Assert.Equal(0x80, e.StatusCode);
        Assert.True(e.DoNotRetry);
        Assert.Equal((byte)NvmOpcode.Read, e.Command.Opcode);
        Assert.Equal(1020UL, e.Command.StartingLba);
        Assert.Equal(8, e.Command.BlockCount);
        Assert.Equal(1u, e.Command.Nsid);
        Assert.Contains("LBA Out of Range", e.Message);
        q.Read(ns, 0, 8, buf);
        Assert.Equal(0, q.Outstanding);
    }

    [Fact]
    public void FlushWriteZeroesAndDeallocate()
    {
        using var dev = New();
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        dev.Disk.Fill(0xAB);
        q.Flush(ns);
        q.WriteZeroes(ns, 10, 4);
        Assert.All(dev.Disk.Slice(10 * 512, 4 * 512).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xAB, dev.Disk[14 * 512]);
        q.Deallocate(ns, 20, 2);
        Assert.All(dev.Disk.Slice(20 * 512, 2 * 512).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(0xAB, dev.Disk[22 * 512]);
    }

    [Fact]
    public void OptionalCommandsTheControllerLacksAreRefused()
    {
        using var dev = New(oncs: OptionalNvmCommands.None);
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        Assert.Throws<NotSupportedException>(() => q.WriteZeroes(c.Namespaces[0], 0, 1));
        Assert.Throws<NotSupportedException>(() => q.Deallocate(c.Namespaces[0], 0, 1));
    }

    [Fact]
    public void BatchSubmissionRingsOnceAndReapsEverything()
    {
        using var dev = New();
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { Entries = 17 });
        Assert.Equal(16, q.Depth);
        using var buf = dev.Dma.Allocate(16 * 4096, new DmaAllocationOptions { Contiguous = false });
        int rings = dev.SubmissionDoorbells(q.QueueId);
        var tags = new HashSet<ushort>();
        for (int i = 0; i < 16; i++) { tags.Add(q.SubmitRead(ns, (ulong)i * 8, 8, buf, (ulong)i * 4096)); }
        Assert.Equal(16, tags.Count);
        Assert.Throws<InvalidOperationException>(() => q.SubmitRead(ns, 0, 8, buf));
        q.RingDoorbell();
        Assert.Equal(rings + 1, dev.SubmissionDoorbells(q.QueueId));
        var done = new NvmeIoCompletion[32];
        int n = q.Reap(done);
        Assert.Equal(16, n);
        Assert.All(done[..n], d => Assert.True(d.IsSuccess));
        Assert.Equal(tags, done[..n].Select(d => d.Tag).ToHashSet());
        Assert.Equal(0, q.Outstanding);
    }

    [Fact]
    public void QueuesWrapManyTimesWithThePhaseFlipping()
    {
        using var dev = New();
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { Entries = 4 });
        using var buf = dev.Dma.Allocate(4096);
        for (int i = 0; i < 50; i++)
        {
            buf.Span.Fill((byte)i);
            q.Write(ns, (ulong)(i % 10), 1, buf);
            buf.Span.Clear();
            q.Read(ns, (ulong)(i % 10), 1, buf);
            Assert.Equal((byte)i, buf.Span[511]);
        }
    }

    [Fact]
    public void SeveralQueuesWorkFromSeveralThreads()
    {
        using var dev = New(blocks: 16384);
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        var queues = Enumerable.Range(0, 3).Select(_ => c.CreateIoQueue()).ToArray();
        Assert.Equal([1, 2, 3], queues.Select(q => q.QueueId));
        Parallel.For(0, 3, t =>
        {
            using var buf = dev.Dma.Allocate(4096);
            for (int i = 0; i < 50; i++)
            {
                ulong lba = (ulong)(t * 1000 + i * 8);
                buf.Span.Fill((byte)(t * 50 + i));
                queues[t].Write(ns, lba, 8, buf);
                buf.Span.Clear();
                queues[t].Read(ns, lba, 8, buf);
                Assert.Equal((byte)(t * 50 + i), buf.Span[4095]);
            }
        });
        foreach (var q in queues) { q.Dispose(); }
        Assert.Equal(0, dev.QueuesAlive);
    }

    [Fact]
    public async Task MsixQueuesCompleteAsynchronously()
    {
        using var dev = New();
        dev.Deferred = true;
        using var c = Open(dev, new NvmeControllerOptions { EnableMsix = true });
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { UseInterrupts = true });
        Assert.True(q.UsesInterrupts);
        using var buf = dev.Dma.Allocate(8192);
        buf.Span.Fill(0x5A);
        var ct = TestContext.Current.CancellationToken;
        await q.WriteAsync(ns, 40, 16, buf, cancellationToken: ct);
        buf.Span.Clear();
        await q.ReadAsync(ns, 40, 16, buf, cancellationToken: ct);
        await q.FlushAsync(ns, ct);
        Assert.All(buf.Span.ToArray(), b => Assert.Equal(0x5A, b));
        Assert.False(buf.IsInUse);
        Assert.True(dev.Model.InterruptsSignalled(q.QueueId) > 0);
    }

    [Fact]
    public void InterruptQueuesNeedMsix()
    {
        using var dev = New();
        using var c = Open(dev);
        Assert.Throws<InvalidOperationException>(() => c.CreateIoQueue(new NvmeIoQueueOptions { UseInterrupts = true }));
    }

    [Fact]
    public void FatalStatusIsReportedAndResetRecovers()
    {
        using var dev = New();
        using var c = Open(dev, new NvmeControllerOptions { CommandTimeout = TimeSpan.FromSeconds(2), MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        buf.Span.Fill(7);
        q.Write(ns, 5, 8, buf);
        dev.SetFatal();
        Assert.Throws<NvmeControllerFatalException>(() => q.Read(ns, 5, 8, buf));
        Assert.True(c.IsFaulted);
        Assert.Throws<NvmeControllerFatalException>(() => q.Read(ns, 5, 8, buf));
        c.Reset();
        Assert.False(c.IsFaulted);
        Assert.Equal(1, c.ResetCount);
        buf.Span.Clear();
        q.Read(ns, 5, 8, buf);
        Assert.Equal(7, buf.Span[100]);
        Assert.Equal(1, dev.QueuesAlive);
    }

    [Fact]
    public void TimeoutIsReportedAndResetRecovers()
    {
        using var dev = New();
        using var c = Open(dev, new NvmeControllerOptions { CommandTimeout = TimeSpan.FromMilliseconds(200), MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        dev.Stalled = true;
        var e = Assert.Throws<NvmeTimeoutException>(() => q.Read(ns, 9, 1, buf));
        Assert.IsAssignableFrom<NvmeException>(e);                     // one hierarchy: NvmeException, VfioException
        Assert.Equal(9UL, e.Command.StartingLba);
        Assert.True(c.IsFaulted);
        dev.Stalled = false;
        c.Reset();
        q.Read(ns, 9, 1, buf);
        Assert.Equal(0, q.Outstanding);
    }

    /// <summary>
    /// A command placed by a continuation on the completion thread carries the round's time; when that continuation
    /// holds the thread longer than the command timeout, the command must not time out for it.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task ALongContinuationDoesNotCountAgainstTheCommandsItPlaced()
    {
        using var dev = New();
        using var c = Open(dev, new NvmeControllerOptions { CommandTimeout = TimeSpan.FromMilliseconds(1000), MinimumReadyTimeout = TimeSpan.FromSeconds(1) });
        var ns = c.Namespaces[0];
        using var buf = dev.Dma.Allocate(3 * 4096);             // outlives the queue: it is disposed after q
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { CompletionMode = NvmeCompletionMode.Polled });
        // The premise needs the first read's continuation on the queue's completion thread. On a loaded host the
        // completion can win the race with the await, and the continuation then runs elsewhere (inline or on the
        // pool): such a round places nothing and is tried again.
        for (int attempt = 0; ; attempt++)
        {
            Assert.True(attempt < 20, "the first read's continuation never ran on the completion thread");
            var placed = new TaskCompletionSource<ValueTask?>(TaskCreationOptions.RunContinuationsAsynchronously);
            async Task First()
            {
                await q.ReadAsync(ns, 0, 1, buf, 0, TestContext.Current.CancellationToken);
                if (Thread.CurrentThread.Name != $"nvme Q{q.QueueId} completions") { placed.SetResult(null); return; }
                // On the completion thread: place the next read on a device that does not answer, then hold the thread.
                dev.Stalled = true;
                var next = q.ReadAsync(ns, 1, 1, buf, 4096, TestContext.Current.CancellationToken);
                Thread.Sleep(1500);
                placed.SetResult(next);
            }
            await First();
            if (await placed.Task is not { } second) { continue; }
            await Task.Delay(100, TestContext.Current.CancellationToken);
            dev.Stalled = false;
            await q.ReadAsync(ns, 2, 1, buf, 8192, TestContext.Current.CancellationToken);   // its doorbell lets the device take both
            await second;
            break;
        }
        Assert.False(c.IsFaulted);
        Assert.Equal(0, q.Outstanding);
    }

    [Fact]
    public void BatchCommandsInFlightAtResetComeBackAborted()
    {
        using var dev = New();
        dev.Stalled = true;
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.SubmitRead(ns, 0, 1, buf);
        q.RingDoorbell();
        c.Reset();
        var done = new NvmeIoCompletion[4];
        Assert.Equal(1, q.Reap(done));
        Assert.Equal(0x08, done[0].Status.Code);
        Assert.Throws<NvmeCommandException>(() => q.EnsureSuccess(done[0]));
    }

    [Fact]
    public void InjectedErrorCarriesStatusAndDnr()
    {
        using var dev = New();
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        dev.FailNextIo = NvmeStatus.Create(StatusCodeType.MediaError, 0x81, doNotRetry: false, more: true);
        var e = Assert.Throws<NvmeCommandException>(() => q.Read(c.Namespaces[0], 0, 1, buf));
        Assert.Equal(StatusCodeType.MediaError, e.StatusCodeType);
        Assert.True(e.More);
        Assert.False(e.DoNotRetry);
    }

    [Fact]
    public void DisposeShutsDownDisablesStopsDmaThenFreesMemory()
    {
        using var dev = New();
        var c = Open(dev);
        var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Read(c.Namespaces[0], 0, 1, buf);
        c.Dispose();
        var log = dev.Log;
        int shutdown = log.IndexOf("shutdown"), disable = log.Events.ToList().LastIndexOf("disable"),
            busOff = log.IndexOf("bus master off");
        Assert.True(shutdown >= 0 && disable > shutdown && busOff > disable, string.Join(", ", log.Events));
        Assert.False(dev.Enabled);
        if (dev.Allocator is { } fake)
        {
            Assert.True(log.IndexOf("free nvme") > busOff, string.Join(", ", log.Events));
            Assert.Equal(1, fake.LiveBuffers);   // only the test's own buffer
        }
        Assert.Throws<ObjectDisposedException>(() => q.Read(c.Namespaces[0], 0, 1, buf));
        q.Dispose();
    }

    [Fact]
    public void QueueMemoryCannotBeFreedWhileTheControllerOwnsIt()
    {
        using var dev = New();
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        Assert.Throws<InvalidOperationException>(() => q.Pair.Dispose());
    }

    [Fact]
    public void DoorbellStrideIsHonoured()
    {
        using var dev = New(doorbellStride: 2);
        using var c = Open(dev);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        q.Write(c.Namespaces[0], 0, 8, buf);
        q.Read(c.Namespaces[0], 0, 8, buf);
        Assert.Equal(2, dev.SubmissionDoorbells(q.QueueId));
    }

    [Fact]
    public void SynchronousPolledIoAllocatesNothing()
    {
        RequireInProcess("a vfio-user region write is a message with a reply: the socket path allocates by nature");
        using var dev = New(blocks: 16384);
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(16384, new DmaAllocationOptions { Contiguous = false });
        for (int i = 0; i < 200; i++) { q.Read(ns, (ulong)i, 8, buf); q.Write(ns, (ulong)i, 24, buf); }   // warm up
        long allocated = LeastAllocatedOverWindows(() =>
        {
            for (int i = 0; i < 3_000; i++)
            {
                q.Read(ns, (ulong)(i % 1000) * 8, 8, buf);           // 4 KiB: PRP1 only
                q.Write(ns, (ulong)(i % 1000) * 8, 24, buf);         // 12 KiB: a PRP list
            }
        });
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void BatchPathAllocatesNothing()
    {
        RequireInProcess("a vfio-user region write is a message with a reply: the socket path allocates by nature");
        using var dev = New(blocks: 16384);
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { Entries = 33 });
        using var buf = dev.Dma.Allocate(32 * 4096, new DmaAllocationOptions { Contiguous = false });
        var done = new NvmeIoCompletion[32];
        void Round()
        {
            for (int i = 0; i < 32; i++) { q.SubmitRead(ns, (ulong)i * 8, 8, buf, (ulong)i * 4096); }
            q.RingDoorbell();
            int got = 0;
            while (got < 32) { got += q.Reap(done.AsSpan(got)); }
        }
        for (int i = 0; i < 20; i++) { Round(); }
        Assert.Equal(0, LeastAllocatedOverWindows(() => { for (int i = 0; i < 300; i++) { Round(); } }));
    }

    [Fact]
    public async Task AQueueServesASynchronousCallWhileAnAsynchronousOneWaits()
    {
        using var dev = New();
        dev.Deferred = true;
        using var c = Open(dev);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var a = dev.Dma.Allocate(4096);
        using var b = dev.Dma.Allocate(4096);
        a.Span.Fill(0x5A);
        q.Write(ns, 0, 8, a);
        // Stalled: the read cannot complete before the second call is made (a timing window would make this flaky).
        dev.Stalled = true;
        var pending = q.ReadAsync(ns, 0, 8, b, cancellationToken: TestContext.Current.CancellationToken);
        Assert.False(pending.IsCompleted);
        Assert.True(b.IsInUse);                                   // leased while the command is in flight
        var sync = Task.Run(() => q.Read(ns, 0, 8, a), TestContext.Current.CancellationToken);
        await Task.Delay(50, TestContext.Current.CancellationToken);
        Assert.False(sync.IsCompleted);
        dev.Stalled = false;     // the worker thread picks both commands up on its next round
        await pending;
        await sync;
        Assert.Equal(0x5A, b.Span[4095]);
        Assert.False(b.IsInUse);
    }
}
