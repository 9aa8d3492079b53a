using Vfio.Cli.Tools.Net;
using Vfio.Net;
using Vfio.Tests.Shared;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.VirtioNet.Tests;

/// <summary>The meter's instruments are process-wide and every emulated pair has the same addresses: these tests run alone.</summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>Two virtio-net ports on the in-process model, as the "Vfio.Net" meter and activity source report them.</summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TelemetryTests
{
    [Fact]
    public void PacketsAndBytesPerQueueAndDirectionAndRingFullAreCounted()
    {
        using var metrics = new MetricRecorder(NetTelemetry.Name);
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 64);
        using var _a = devA;
        using var _b = devB;
        using var a = VirtioNetDevice.Open(devA, new VirtioNetOptions { PoolSize = 512 });
        using var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { Pool = a.Pool });
        var portA = (VfioTelemetry.PciAddressTag, (object?)devA.Address.ToString());
        var portB = (VfioTelemetry.PciAddressTag, (object?)devB.Address.ToString());

        // B never polls: its 64 receive buffers fill, then A's ring of 64; what does not fit stays the caller's.
        var frames = new PacketBuffer[200];
        int n = a.Pool.Allocate(frames);
        for (int i = 0; i < n; i++) { TestFrames.Write(frames[i].Room, 60, (ulong)i, TestFrames.Broadcast, TestFrames.Broadcast); frames[i].Length = 60; }
        int taken = 0, refused = 0;
        for (int round = 0; round < 3; round++)
        {
            int t = a.Transmit(frames.AsSpan(taken, n - taken));
            refused += n - taken - t;
            taken += t;
        }
        PacketPool.Free(frames.AsSpan(taken, n - taken));
        var rx = new PacketBuffer[32];
        int received = 0;
        for (int got; (got = b.Receive(rx)) > 0; received += got) { PacketPool.Free(rx.AsSpan(0, got)); }

        metrics.Collect();
        var transmit = (NetTelemetry.DirectionTag, (object?)"transmit");
        var receive = (NetTelemetry.DirectionTag, (object?)"receive");
        Assert.Equal(taken, metrics.Sum("vfio.net.packets", portA, transmit, (NetTelemetry.QueueTag, 0)));
        Assert.Equal(taken * 60, metrics.Sum("vfio.net.io", portA, transmit));
        Assert.Equal(received, metrics.Sum("vfio.net.packets", portB, receive));
        Assert.True(received > 0);
        Assert.Equal(refused, metrics.Sum("vfio.net.tx.ring_full", portA));
        Assert.True(refused > 0);
        Assert.Equal(0, metrics.Sum("vfio.net.tx.ring_full", portB));
        Assert.All(metrics.Of("vfio.net.packets", portA), m => Assert.Equal(VirtioNetDriver.Name, m.Tag(NetTelemetry.DriverTag)));
        Assert.Equal("{packet}", metrics.Of("vfio.net.packets").First().Unit);
    }

    [Fact]
    public void BringUpAndResetAreActivitiesAndAClosedPortLeavesTheMeter()
    {
        using var activities = new ActivityRecorder(NetTelemetry.Name);
        using var metrics = new MetricRecorder(NetTelemetry.Name);
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 64);
        using var _a = devA;
        using var _b = devB;
        var port = (VfioTelemetry.PciAddressTag, (object?)devA.Address.ToString());

        using (var a = VirtioNetDevice.Open(devA))
        {
            a.Reset();
            metrics.Collect();
            Assert.NotEmpty(metrics.Of("vfio.net.packets", port));
        }
        metrics.Clear();
        metrics.Collect();
        Assert.Empty(metrics.Of("vfio.net.packets", port));

        var mine = activities.Of(devA.Address);
        Assert.Equal(["virtio-net.bringup", "virtio-net.reset"], mine.Select(a => a.OperationName));
        Assert.All(mine, a => Assert.Equal(System.Diagnostics.ActivityStatusCode.Unset, a.Status));
    }
}
