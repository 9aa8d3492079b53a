using Vfio.Net;
using Vfio.Dma;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet.Tests;

/// <summary>
/// The DMA audit (on in every test suite) on virtio descriptors: a buffer address outside what its token leases is
/// caught before its descriptor is written, so nothing can be published or kicked.
/// </summary>
public sealed class DmaAuditTests : IDisposable
{
    private readonly EmulatedDma _dma = new();
    private readonly List<DmaBuffer> _buffers = [];
    private readonly Dictionary<int, DmaWindow> _leases = [];
    private readonly SplitVirtqueue _ring;

    private sealed class Leases(Dictionary<int, DmaWindow> map) : IVirtqueueLeases
    {
        public DmaWindow LeaseOf(int token) => map.TryGetValue(token, out var w) ? w : default;
    }

    public DmaAuditTests()
    {
        var layout = SplitQueueLayout.For(8);
        var memory = Allocate((ulong)layout.TotalSize, "ring");
        _ring = new SplitVirtqueue(layout, memory.Pointer, memory.DeviceAddress, name: "virtqueue 1 (tx)") { Leases = new Leases(_leases) };
    }

    public void Dispose()
    {
        foreach (var b in _buffers) { b.Dispose(); }
    }

    private DmaBuffer Allocate(ulong bytes, string name)
    {
        var b = _dma.Allocate(bytes, new DmaAllocationOptions { Name = name });
        _buffers.Add(b);
        return b;
    }

    private DmaAuditViolationException ExpectCaught(Action enqueue)
    {
        var e = Assert.Throws<DmaAuditViolationException>(enqueue);
        // Nothing of the chain reached the ring: every descriptor is free and there is nothing to publish or kick.
        Assert.Equal(_ring.Size, _ring.FreeDescriptors);
        Assert.Equal(0, _ring.ChainsInFlight);
        Assert.False(_ring.Publish());
        Assert.Equal("virtqueue 1 (tx)", e.Queue);
        return e;
    }

    [Fact]
    public void ABufferInsideItsTokensLeasePasses()
    {
        var a = Allocate(4096, "a");
        _leases[1] = new DmaWindow(a, 2048, 2048);
        Assert.True(_ring.Enqueue(a.DeviceAddress + 2048, 2048, VirtqDescriptorFlags.Write, token: 1) >= 0);
        Assert.True(_ring.Publish());
    }

    [Fact]
    public void AnAddressOutsideEveryBufferIsCaught()
    {
        var a = Allocate(4096, "a");
        _leases[1] = DmaWindow.Whole(a);
        var e = ExpectCaught(() => _ring.Enqueue(new DmaAddress(0x1234_5000), 64, VirtqDescriptorFlags.None, token: 1));
        Assert.Null(e.Buffer);
        Assert.Equal(0x1234_5000UL, e.Address.Value);
        Assert.Contains("token 1", e.Command);
    }

    [Fact]
    public void ALengthPastTheEndOfTheLeaseIsCaught()
    {
        var a = Allocate(4096, "a");
        _leases[1] = new DmaWindow(a, 0, 2048);
        var e = ExpectCaught(() => _ring.Enqueue(a.DeviceAddress + 2000, 64, VirtqDescriptorFlags.Write, token: 1));
        Assert.Equal("a", e.Buffer);
        Assert.Contains("runs past the end", e.Problem);
    }

    [Fact]
    public void AFreedBufferIsCaughtAndNamed()
    {
        var a = Allocate(4096, "a");
        var gone = _dma.Allocate(4096, new DmaAllocationOptions { Name = "gone" });
        var stale = gone.DeviceAddress;
        gone.Dispose();
        _leases[1] = DmaWindow.Whole(a);
        var e = ExpectCaught(() => _ring.Enqueue(stale, 64, VirtqDescriptorFlags.None, token: 1));
        Assert.Contains("'gone', which was freed", e.Problem);
    }

    [Fact]
    public void ABufferLeasedToAnotherTokenIsCaught()
    {
        var a = Allocate(4096, "a");
        var b = Allocate(4096, "b");
        _leases[1] = DmaWindow.Whole(a);
        _leases[2] = DmaWindow.Whole(b);
        var e = ExpectCaught(() => _ring.Enqueue(b.DeviceAddress, 64, VirtqDescriptorFlags.None, token: 1));
        Assert.Equal("b", e.Buffer);
        Assert.Contains("not the one leased to this command ('a')", e.Problem);
    }

    [Fact]
    public void ATokenThatLeasesNothingIsCaught()
    {
        var a = Allocate(4096, "a");
        var e = ExpectCaught(() => _ring.Enqueue(a.DeviceAddress, 64, VirtqDescriptorFlags.None, token: 9));
        Assert.Contains("no DMA buffer is leased", e.Problem);
    }

    [Fact]
    public void OneWrongBufferOfAChainStopsTheWholeChain()
    {
        var a = Allocate(4096, "a");
        _leases[1] = DmaWindow.Whole(a);
        var e = ExpectCaught(() => _ring.EnqueueChain(
        [
            new VirtqBuffer(a.DeviceAddress, 16, DeviceWritable: false),
            new VirtqBuffer(a.DeviceAddress + 4096, 1, DeviceWritable: true),
        ], token: 1));
        Assert.StartsWith("buffer 1 of the chain", e.Command);
    }

    [Fact]
    public void TransmittingAFreedPacketIsCaughtBeforeTheKickAndTrafficGoesOn()
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 64);
        using (devA)
        using (devB)
        {
            using var a = VirtioNetDevice.Open(devA);
            using var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { Pool = a.Pool });
            Assert.True(a.Pool.TryAllocate(out var packet));
            packet.Length = 60;
            packet.Free();
            long kicks = devA.Kicks, sent = devA.FramesSent;
            int inUse = a.Pool.InUseCount;
            var e = Assert.Throws<DmaAuditViolationException>(() => a.Transmit([packet]));
            Assert.Contains("(tx)", e.Queue);
            Assert.Contains("no DMA buffer is leased", e.Problem);
            devA.Pump();
            Assert.Equal(kicks, devA.Kicks);
            Assert.Equal(sent, devA.FramesSent);
            Assert.Equal(inUse, a.Pool.InUseCount);

            // A packet the application holds goes out, audited, and arrives.
            Assert.True(a.Pool.TryAllocate(out var good));
            good.Length = 60;
            good.Data.Fill(0x42);
            Assert.Equal(1, a.Transmit([good]));
            var rx = new PacketBuffer[4];
            int n = 0;
            for (int spin = 0; n == 0 && spin < 1000; spin++) { devA.Pump(); devB.Pump(); n = b.Receive(rx); }
            Assert.Equal(1, n);
            Assert.Equal(0x42, rx[0].Data[59]);
            rx[0].Free();
        }
    }
}
