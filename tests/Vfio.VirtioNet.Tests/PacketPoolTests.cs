using Vfio.Net;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.VirtioNet.Tests;

public sealed class PacketPoolTests
{
    [Fact]
    public void HandsOutEveryBufferOnceWithDistinctMemory()
    {
        var dma = new EmulatedDma();
        using var pool = new PacketPool(dma, 1500, bufferSize: 2048);   // 1500 buffers span two 2 MiB chunks
        Assert.Equal(2, dma.LiveBuffers);
        var all = new PacketBuffer[1600];
        Assert.Equal(1500, pool.Allocate(all));
        Assert.Equal(0, pool.FreeCount);
        Assert.False(pool.TryAllocate(out _));
        Assert.Equal(1500, all.Take(1500).Select(p => p.DeviceAddress).Distinct().Count());
        foreach (var p in all.Take(1500))
        {
            Assert.Equal(0, p.Length);
            Assert.Equal(pool.DataRoom, p.Room.Length);
            Assert.Equal(128UL, p.DeviceAddress.Value % 2048);   // data after the headroom
        }
        PacketPool.Free(all.AsSpan(0, 1500));
        Assert.Equal(1500, pool.FreeCount);
        pool.Dispose();
        Assert.Equal(0, dma.LiveBuffers);
    }

    [Fact]
    public void LengthIsSharedByCopiesAndBoundedByTheDataRoom()
    {
        using var pool = new PacketPool(new EmulatedDma(), 4);
        Assert.True(pool.TryAllocate(out var p));
        var copy = p;
        p.Length = 60;
        Assert.Equal(60, copy.Length);
        Assert.Equal(60, copy.Data.Length);
        p.Data.Fill(0xAB);
        Assert.All(copy.Data.ToArray(), b => Assert.Equal(0xAB, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Length = pool.DataRoom + 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.Length = -1);
        Assert.Equal(p, copy);
        Assert.True(p.IsValid);
        Assert.False(default(PacketBuffer).IsValid);
    }

    [Fact]
    public void DoubleFreeAndForeignFreeAreCaught()
    {
        using var pool = new PacketPool(new EmulatedDma(), 4);
        using var other = new PacketPool(new EmulatedDma(), 4);
        Assert.True(pool.TryAllocate(out var p));
        p.Free();
        Assert.Contains("double free", Assert.Throws<PacketPoolDoubleFreeException>(() => p.Free()).Message);
        Assert.True(other.TryAllocate(out var q));
        Assert.Throws<InvalidOperationException>(() => pool.Free(q));
    }

    [Fact]
    public void HandlesArePlainIntegersThatOutliveNothing()
    {
        var pool = new PacketPool(new EmulatedDma(), 4);
        Assert.InRange(pool.Id, 1, PacketPool.MaxPools);
        Assert.True(pool.TryAllocate(out var p));
        Assert.Same(pool, p.Pool);
        Assert.Equal(System.Runtime.CompilerServices.Unsafe.SizeOf<int>(), System.Runtime.CompilerServices.Unsafe.SizeOf<PacketBuffer>());
        pool.Dispose();
        Assert.Throws<ObjectDisposedException>(() => p.Pool);
        Assert.Throws<ObjectDisposedException>(() => default(PacketBuffer).Pool);
        using var next = new PacketPool(new EmulatedDma(), 1);   // the number is free again
        Assert.NotEqual(0, next.Id);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(2000)]
    [InlineData(PacketPool.MaxBufferSize + 64)]
    public void BufferSizeIsChecked(int size) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new PacketPool(new EmulatedDma(), 1, size));

    [Fact]
    public void TheLargestBufferHoldsA64KibTcpPacketBehindAVlanTag()
    {
        using var pool = new PacketPool(new EmulatedDma(), 2, PacketPool.MaxBufferSize);
        Assert.True(pool.DataRoom >= 65535 + 18, $"{pool.DataRoom} data bytes");
        Assert.True(pool.TryAllocate(out var p));
        p.Length = pool.DataRoom;
        Assert.Equal(0, p.SegmentSize);
        p.SegmentSize = 1448;
        Assert.Equal(1448, p.SegmentSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => p.SegmentSize = 65536);
        p.Free();
        // A buffer handed out again starts with no segment size, as with flags.
        Assert.True(pool.TryAllocate(out var again));
        Assert.True(pool.TryAllocate(out var other));
        Assert.Equal(0, again.SegmentSize);
        Assert.Equal(0, other.SegmentSize);
    }

    [Fact]
    public void OffloadFlagsAndHashLiveInThePoolAndAFreshBufferHasNoFlags()
    {
        using var pool = new PacketPool(new EmulatedDma(), 1);
        Assert.True(pool.TryAllocate(out var p));
        Assert.Equal(PacketFlags.None, p.Flags);
        // A receiving driver writes them through the marshal; the application reads them on the handle.
        PacketPoolMarshal.GetFlags(pool, p.Index) = PacketFlags.L4ChecksumGood | PacketFlags.RssHash;
        PacketPoolMarshal.GetRssHash(pool, p.Index) = 0x51ccc178;
        var copy = p;
        Assert.Equal(PacketFlags.L4ChecksumGood | PacketFlags.RssHash, copy.Flags);
        Assert.Equal(0x51ccc178u, copy.RssHash);
        p.Free();
        Assert.True(pool.TryAllocate(out var again));
        Assert.Equal(p, again);   // the one buffer, reused
        Assert.Equal(PacketFlags.None, again.Flags);
    }

    [Fact]
    public void TheMarshalRoundTripsHandlesAndKeepsTheDoubleFreeCheck()
    {
        using var pool = new PacketPool(new EmulatedDma(), 2);
        Assert.True(pool.TryAllocate(out var p));
        int handle = PacketPoolMarshal.GetHandle(p);
        Assert.Equal(p, PacketPoolMarshal.FromHandle(handle));
        Assert.Equal(p, PacketPoolMarshal.CreateBuffer(pool.Id, p.Index));
        Assert.Equal(pool.Id, PacketPoolMarshal.GetPoolId(p));
        PacketPoolMarshal.SetLength(pool, p.Index, 42);
        Assert.Equal(42, p.Length);
        Assert.Equal(p.DeviceAddress, PacketPoolMarshal.GetDeviceAddress(pool, p.Index) + PacketPool.Headroom);
        PacketPoolMarshal.FreeHandle(handle);
        Assert.Throws<PacketPoolDoubleFreeException>(() => PacketPoolMarshal.FreeIndex(pool, p.Index));
        Assert.Equal(2, pool.FreeCount);
    }
}
