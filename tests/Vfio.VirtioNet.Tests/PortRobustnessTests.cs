using Vfio.Devices;
using Vfio.Dma;
using Vfio.Net;
using Vfio.VirtioNet.Tests.Emulation;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Virtio;
using static Vfio.Spec.Virtio.VirtioFeatures;

namespace Vfio.VirtioNet.Tests;

public sealed class InProcessPortRobustnessTests() : PortRobustnessTests(VirtioTransport.InProcess);

public sealed class SocketPortRobustnessTests() : PortRobustnessTests(VirtioTransport.Socket);

// DMA without an fd: every ring access is a message. The whole device suite this way took 90 s on the loaded
// development VM (the NVMe suite covers that path in full); the robustness tests here also carry a frame each.
public sealed class SocketMessageDmaPortRobustnessTests() : PortRobustnessTests(VirtioTransport.SocketMessages);

/// <summary>
/// A driver that hands the emulated port malformed rings: the port sets DEVICE_NEEDS_RESET and reports a violation
/// instead of failing, and after a reset the real driver brings it up and moves traffic.
/// </summary>
public abstract class PortRobustnessTests(VirtioTransport transport)
{
    private const ulong Unmapped = 0x7700_0000_0000;

    /// <summary>Brings port A up by hand (no driver) with one transmit queue holding <paramref name="chain"/>, and kicks it.</summary>
    private static void KickMalformedTransmit(EmulatedVirtioNet dev, DmaBuffer ring, ReadOnlySpan<VirtqBuffer> chain)
    {
        using var t = new VirtioPciTransport(dev);
        t.Reset();
        t.AddStatus(VirtioStatus.Acknowledge | VirtioStatus.Driver);
        t.WriteDriverFeatures(Version1 | AccessPlatform);
        t.AddStatus(VirtioStatus.FeaturesOk);
        dev.Config.UpdateCommand(PciCommand.MemorySpace | PciCommand.BusMaster);
        var layout = SplitQueueLayout.For(16);
        var tx = new SplitVirtqueue(layout, ring.Pointer, ring.DeviceAddress);
        ulong doorbell = t.EnableQueue(1, tx);
        t.AddStatus(VirtioStatus.DriverOk);
        tx.EnqueueChain(chain);
        tx.Publish();
        t.Notify(doorbell, 1);
        Assert.True((t.Status & VirtioStatus.DeviceNeedsReset) != 0, $"status {t.Status}");
    }

    [Theory]
    [InlineData("unmapped")]
    [InlineData("writable")]
    [InlineData("oversized")]
    public void AMalformedTransmitChainSetsDeviceNeedsResetAndAResetRecovers(string fault)
    {
        var (a, b) = EmulatedVirtioNet.CreatePair(queueSize: 16, transport: transport);
        using var devA = a;
        using var devB = b;
        devA.ViolationsExpected = true;
        using var ring = devA.Dma.Allocate((ulong)SplitQueueLayout.For(16).TotalSize, new DmaAllocationOptions { Contiguous = true });
        using var data = devA.Dma.Allocate(4096, new DmaAllocationOptions { Contiguous = true });
        VirtqBuffer[] chain = fault switch
        {
            "unmapped" => [new(new DmaAddress(Unmapped), 100, false)],
            "writable" => [new(data.DeviceAddress, 100, true)],
            _ => [new(data.DeviceAddress, 40000, false), new(data.DeviceAddress, 40000, false)],   // longer than any frame
        };
        KickMalformedTransmit(devA, ring, chain);
        Assert.NotEmpty(devA.Violations);
        Assert.Equal(0, devA.FramesSent);

        // The driver resets the port on open and it works again.
        devA.ViolationsExpected = false;
        using var portA = VirtioNetDevice.Open(devA);
        using var portB = VirtioNetDevice.Open(devB, new VirtioNetOptions { Pool = transport == VirtioTransport.InProcess ? portA.Pool : null });
        var frames = new PacketBuffer[1];
        Assert.Equal(1, portA.Pool.Allocate(frames));
        frames[0].Length = 60;
        Assert.Equal(1, portA.Transmit(frames));
        var rx = new PacketBuffer[4];
        int got = 0;
        for (int spin = 0; got == 0 && spin < 1000; spin++) { got = portB.Receive(rx); }
        Assert.Equal(1, got);
        Assert.Equal(60, rx[0].Length);
        rx[0].Free();
    }

    [Fact]
    public void StrayDoorbellsAndRegisterMisuseAreIgnored()
    {
        var (a, b) = EmulatedVirtioNet.CreatePair(queueSize: 16, transport: transport);
        using var devA = a;
        using var devB = b;
        devA.ViolationsExpected = true;
        using (var bar = devA.OpenRegion(4))
        {
            bar.Write16(0x3000 + 4 * 9, 9);     // queue 9 does not exist, and the device is not live
            bar.Write16(0x3000 + 4, 7);         // queue 1's doorbell with the wrong index
            bar.Write16(0x18, 12);              // queue size not a power of two
            bar.Write32(0x3000, 0);             // a 32-bit doorbell write
        }
        Assert.Equal(4, devA.Violations.Count);
        Assert.Equal(0, devA.Kicks);
        devA.ViolationsExpected = false;
        using var portA = VirtioNetDevice.Open(devA);
        Assert.True(portA.IsLinkUp);
    }
}
