using System.Diagnostics;
using Vfio.Dma;
using Vfio.Spec.Nvme;
using Vfio.Tests.Shared;

namespace Vfio.Nvme.Tests;

/// <summary>
/// The "Vfio.Nvme" meter and activity source against the emulated controller: every I/O shows up once with its
/// queue, operation and outcome, bytes, errors with their status, latency, the queue-depth gauge, and the admin
/// activities. Alone in the non-parallel collection: the instruments are process-wide, and other tests' I/O on the
/// same emulated address would be counted too.
/// </summary>
[Collection(nameof(AllocationCollection))]
public sealed class TelemetryTests
{
    private static readonly NvmeControllerOptions Options = new() { MinimumReadyTimeout = TimeSpan.FromSeconds(1) };

    [Fact]
    public void EveryIoIsCountedWithItsQueueOperationOutcomeBytesAndLatency()
    {
        using var dev = BlockDeviceTests.NewDevice();
        using var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(8192, new DmaAllocationOptions { Contiguous = false });
        using var metrics = new MetricRecorder(NvmeTelemetry.Name);
        string address = dev.Address.ToString();

        q.Write(ns, 0, 16, buf);
        q.Write(ns, 16, 8, buf);
        for (int i = 0; i < 3; i++) { q.Read(ns, (ulong)i * 8, 8, buf); }
        q.Flush(ns);

        var queueTag = (NvmeTelemetry.QueueIdTag, (object?)q.QueueId);
        Assert.Equal(2, metrics.Sum("vfio.nvme.io.operations", queueTag, (NvmeTelemetry.OperationTag, "write"), (NvmeTelemetry.OutcomeTag, "ok")));
        Assert.Equal(3, metrics.Sum("vfio.nvme.io.operations", queueTag, (NvmeTelemetry.OperationTag, "read"), (NvmeTelemetry.OutcomeTag, "ok")));
        Assert.Equal(1, metrics.Sum("vfio.nvme.io.operations", queueTag, (NvmeTelemetry.OperationTag, "other"), (NvmeTelemetry.OutcomeTag, "ok")));
        Assert.All(metrics.Of("vfio.nvme.io.operations"), m => Assert.Equal(address, m.Tag(VfioTelemetry.PciAddressTag)));
        Assert.Equal(24 * 512, metrics.Sum("vfio.nvme.io.bytes", (NvmeTelemetry.OperationTag, "write")));
        Assert.Equal(3 * 8 * 512, metrics.Sum("vfio.nvme.io.bytes", (NvmeTelemetry.OperationTag, "read")));
        Assert.Empty(metrics.Of("vfio.nvme.io.errors"));
        var latencies = metrics.Of("vfio.nvme.io.duration");
        Assert.Equal(6, latencies.Count);
        Assert.All(latencies, m => Assert.True(m.Value is >= 0 and < 60, $"{m.Value} s"));
        Assert.All(latencies, m => Assert.Equal("s", m.Unit));
    }

    [Fact]
    public void AFailedReadIsAnErrorWithItsStatusAndMovesNoBytes()
    {
        using var dev = BlockDeviceTests.NewDevice();
        using var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);
        using var metrics = new MetricRecorder(NvmeTelemetry.Name);

        dev.FailNextIo = NvmeStatus.Create(StatusCodeType.MediaError, 0x81);
        Assert.Throws<NvmeCommandException>(() => q.Read(ns, 0, 8, buf));
        q.Read(ns, 0, 8, buf);

        var error = Assert.Single(metrics.Of("vfio.nvme.io.errors"));
        Assert.Equal("2/81", error.Tag(NvmeTelemetry.ErrorTypeTag));
        Assert.Equal("read", error.Tag(NvmeTelemetry.OperationTag));
        Assert.Equal(1, metrics.Sum("vfio.nvme.io.operations", (NvmeTelemetry.OutcomeTag, "error")));
        Assert.Equal(1, metrics.Sum("vfio.nvme.io.operations", (NvmeTelemetry.OutcomeTag, "ok")));
        Assert.Equal(4096, metrics.Sum("vfio.nvme.io.bytes"));
    }

    [Fact]
    public void TheDepthGaugeReadsTheCommandsInFlightOfEachQueue()
    {
        using var dev = BlockDeviceTests.NewDevice();
        using var c = NvmeController.Open(dev, Options);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue(new NvmeIoQueueOptions { Entries = 17 });
        using var buf = dev.Dma.Allocate(16 * 4096, new DmaAllocationOptions { Contiguous = false });
        using var metrics = new MetricRecorder(NvmeTelemetry.Name);
        var queueTag = (NvmeTelemetry.QueueIdTag, (object?)q.QueueId);

        for (int i = 0; i < 5; i++) { q.SubmitRead(ns, (ulong)i * 8, 8, buf, (ulong)i * 4096); }
        metrics.Collect();
        Assert.Equal(5, Assert.Single(metrics.Of("vfio.nvme.queue.outstanding", queueTag)).Value);

        q.RingDoorbell();
        var done = new NvmeIoCompletion[16];
        int n = 0;
        while (n < 5) { n += q.Reap(done.AsSpan(n)); }
        Assert.Equal(5, metrics.Sum("vfio.nvme.io.operations", queueTag));
        metrics.Clear();
        metrics.Collect();
        Assert.Equal(0, Assert.Single(metrics.Of("vfio.nvme.queue.outstanding", queueTag)).Value);

        q.Dispose();
        metrics.Clear();
        metrics.Collect();
        Assert.Empty(metrics.Of("vfio.nvme.queue.outstanding", queueTag));
    }

    [Fact]
    public void NothingIsRecordedWhileNobodyListens()
    {
        using var dev = BlockDeviceTests.NewDevice();
        using var c = NvmeController.Open(dev, Options);
        using var q = c.CreateIoQueue();
        using var buf = dev.Dma.Allocate(4096);

        Assert.False(NvmeTelemetry.Recording);
        using (new MetricRecorder(NvmeTelemetry.Name)) { Assert.True(NvmeTelemetry.Recording); }
        Assert.False(NvmeTelemetry.Recording);
        q.Read(c.Namespaces[0], 0, 8, buf);
    }

    [Fact]
    public void BringUpQueueCreationAndResetAreActivitiesOfTheDevice()
    {
        using var activities = new ActivityRecorder(NvmeTelemetry.Name);
        using var dev = BlockDeviceTests.NewDevice();

        using (var c = NvmeController.Open(dev, Options))
        {
            using var q = c.CreateIoQueue();
            c.Reset();
        }

        var mine = activities.Of(dev.Address);
        Assert.Equal(["nvme.controller.bringup", "nvme.queue.create", "nvme.controller.reset"], mine.Select(a => a.OperationName));
        Assert.All(mine, a => Assert.Equal(ActivityStatusCode.Unset, a.Status));
        Assert.Equal(1, mine[1].GetTagItem(NvmeTelemetry.QueueIdTag));
    }

    [Fact]
    public void ABringUpThatFailsIsAnActivityWithTheErrorStatus()
    {
        using var activities = new ActivityRecorder(NvmeTelemetry.Name);
        using var dev = BlockDeviceTests.NewDevice();

        Assert.Throws<ArgumentOutOfRangeException>(() => NvmeController.Open(dev, Options with { MaxIoQueues = 0 }));

        var bringUp = Assert.Single(activities.Of(dev.Address));
        Assert.Equal(ActivityStatusCode.Error, bringUp.Status);
        Assert.NotNull(bringUp.GetTagItem(NvmeTelemetry.ErrorTypeTag));
    }
}
