using System.Diagnostics;
using Vfio.Net;
using Vfio.Tests.Shared;

namespace Vfio.Igb.Tests;

/// <summary>The meter's instruments are process-wide and every fake has one address: these tests run alone.</summary>
[CollectionDefinition(nameof(TelemetryCollection), DisableParallelization = true)]
public sealed class TelemetryCollection;

/// <summary>The igb port in the "Vfio.Net" meter and activity source, against the in-memory 82576.</summary>
[Collection(nameof(TelemetryCollection))]
public sealed class TelemetryTests
{
    private static IgbOptions Options(int ring = 64) => new() { RingSize = ring, LinkTimeout = TimeSpan.Zero };

    [Fact]
    public void PacketsBytesAndRingFullEventsAreTheDriversCounters()
    {
        using var metrics = new MetricRecorder(NetTelemetry.Name);
        var fake = new FakeIgb();
        var igb = IgbDevice.Open(fake, Options(ring: 8));
        var port = (VfioTelemetry.PciAddressTag, (object?)fake.Address.ToString());
        var mac = igb.MacAddress.GetAddressBytes();
        var frame = Frames.Udp(mac, "169.254.0.1", "169.254.0.2", 1000, 2000);

        // The fake sends nothing until told: a ring of 8 holds 7 packets, the rest of a larger burst stay the caller's.
        fake.AutoTransmit = false;
        var packets = new PacketBuffer[12];
        int n = igb.Pool.Allocate(packets);
        Assert.True(n > 8, $"{n} packets");
        foreach (var p in packets.AsSpan(0, n)) { frame.CopyTo(p.Room); p.Length = frame.Length; }
        int taken = igb.Transmit(packets.AsSpan(0, n));
        PacketPool.Free(packets.AsSpan(taken, n - taken));
        for (int i = 0; i < 3; i++) { Assert.True(fake.Deliver(frame)); }
        var got = new PacketBuffer[4];
        Assert.Equal(3, igb.Receive(got));
        PacketPool.Free(got.AsSpan(0, 3));

        metrics.Collect();
        Assert.Equal(taken, metrics.Sum("vfio.net.packets", port, (NetTelemetry.DirectionTag, "transmit")));
        Assert.Equal(3, metrics.Sum("vfio.net.packets", port, (NetTelemetry.DirectionTag, "receive")));
        Assert.Equal(3 * frame.Length, metrics.Sum("vfio.net.io", port, (NetTelemetry.DirectionTag, "receive")));
        Assert.Equal(n - taken, metrics.Sum("vfio.net.tx.ring_full", port));
        Assert.True(taken < n);
        Assert.All(metrics.Of("vfio.net.packets", port), m => Assert.Equal("igb", m.Tag(NetTelemetry.DriverTag)));

        igb.Dispose();
        metrics.Clear();
        metrics.Collect();
        Assert.Empty(metrics.Of("vfio.net.packets", port));
    }

    [Fact]
    public void BringUpAndResetAreActivitiesOfThePort()
    {
        using var activities = new ActivityRecorder(NetTelemetry.Name);
        var fake = new FakeIgb();
        using (var igb = IgbDevice.Open(fake, Options())) { igb.Reset(); }
        Assert.Throws<DeviceTimeoutException>(() => IgbDevice.Open(new FakeIgb { IgnoreReset = true }, Options()));

        var mine = activities.Of(fake.Address);
        Assert.Equal(["igb.bringup", "igb.reset", "igb.bringup"], mine.Select(a => a.OperationName));
        Assert.Equal([ActivityStatusCode.Unset, ActivityStatusCode.Unset, ActivityStatusCode.Error], mine.Select(a => a.Status));
    }
}
