using Vfio.Devices;
using Vfio.Kernel;
using Vfio.Linux;

namespace Vfio.Tests.Kernel;

/// <summary>
/// Region access over a regular file standing in for a VFIO device file: the same pread/pwrite/mmap calls the
/// kernel path makes, with bounds, alignment and lifetime checks.
/// </summary>
public sealed class KernelRegionTests : IDisposable
{
    private const ulong RegionOffset = 0x10000;
    private const ulong RegionSize = 0x4000;
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"vfio-region-{Guid.NewGuid():N}");
    private readonly SafeFdHandle _fd;

    public KernelRegionTests()
    {
        File.WriteAllBytes(_path, new byte[RegionOffset + RegionSize]);
        _fd = new SafeFdHandle(Interop.Libc.open(_path, Interop.Libc.O_RDWR | Interop.Libc.O_CLOEXEC));
        Assert.False(_fd.IsInvalid);
    }

    public void Dispose()
    {
        _fd.Dispose();
        File.Delete(_path);
    }

    private static RegionInfo Info(RegionFlags flags, IReadOnlyList<SparseArea>? sparse = null) => new()
    {
        Index = 0, Flags = flags, Size = RegionSize, Offset = RegionOffset, SparseAreas = sparse,
    };

    private KernelRegion Open(RegionFlags flags, IReadOnlyList<SparseArea>? sparse = null) =>
        new(_fd, new PciAddress(0, 0, 4, 0), Info(flags, sparse));

    private byte[] FileBytes(ulong offset, int n)
    {
        var all = File.ReadAllBytes(_path);
        return all.AsSpan((int)(RegionOffset + offset), n).ToArray();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TypedAccessesReachTheFileAtTheRegionOffset(bool mmap)
    {
        using var r = Open(RegionFlags.Read | RegionFlags.Write | (mmap ? RegionFlags.Mmap : 0));
        Assert.Equal(mmap, r.IsMapped(0));
        r.Write8(1, 0xAB);
        r.Write16(2, 0x1234);
        r.Write32(4, 0xDEADBEEF);
        r.Write64(8, 0x0102030405060708);
        Assert.Equal(0xAB, r.Read8(1));
        Assert.Equal(0x1234, r.Read16(2));
        Assert.Equal(0xDEADBEEFu, r.Read32(4));
        Assert.Equal(0x0102030405060708UL, r.Read64(8));
        Assert.Equal(new byte[] { 0, 0xAB, 0x34, 0x12, 0xEF, 0xBE, 0xAD, 0xDE, 8, 7, 6, 5, 4, 3, 2, 1 }, FileBytes(0, 16));
    }

    [Fact]
    public void SparseAreasAreMappedAndTheGapUsesPread()
    {
        var sparse = new[] { new SparseArea(0, 0x1000), new SparseArea(0x3000, 0x1000) };
        using var r = Open(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, sparse);
        Assert.Equal(2, r.MappedAreaCount);
        Assert.True(r.IsMapped(0));
        Assert.False(r.IsMapped(0x2000));
        Assert.True(r.IsMapped(0x3ff8));
        r.Write32(0x2000, 0xCAFEF00D);   // pwrite path
        r.Write32(0x3000, 0x11223344);   // mapped path
        Assert.Equal(0xCAFEF00Du, r.Read32(0x2000));
        Assert.Equal(0x11223344u, r.Read32(0x3000));
        Assert.Equal(new byte[] { 0x0D, 0xF0, 0xFE, 0xCA }, FileBytes(0x2000, 4));
        Assert.Equal(new byte[] { 0x44, 0x33, 0x22, 0x11 }, FileBytes(0x3000, 4));
    }

    [Theory]
    [InlineData(RegionSize)]
    [InlineData(RegionSize + 4)]
    [InlineData(ulong.MaxValue - 1)]
    public void OutOfRangeAccessesThrowAndLeaveTheRegionUsable(ulong offset)
    {
        using var r = Open(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => r.Read32(offset & ~3UL));
        Assert.Contains("outside region 0", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => r.Write(offset, new byte[8]));
        r.Write32(0, 7);
        Assert.Equal(7u, r.Read32(0));
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(2, 4)]
    [InlineData(4, 8)]
    [InlineData(3, 4)]
    public void UnalignedAccessesThrow(ulong offset, int width)
    {
        using var r = Open(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap);
        var e = Assert.Throws<ArgumentException>(() =>
        {
            switch (width)
            {
                case 2: r.Read16(offset); break;
                case 4: r.Write32(offset, 1); break;
                default: r.Read64(offset); break;
            }
        });
        Assert.Contains("aligned", e.Message);
    }

    [Fact]
    public void AccessAfterDisposeThrowsInsteadOfFaulting()
    {
        var r = Open(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap);
        r.Write32(0, 1);
        r.Dispose();
        Assert.Throws<ObjectDisposedException>(() => r.Read32(0));
        Assert.Throws<ObjectDisposedException>(() => r.Write64(8, 1));
        r.Dispose(); // twice is fine
    }

    [Fact]
    public void ReadOnlyRegionRefusesWrites()
    {
        using var r = Open(RegionFlags.Read);
        Assert.Throws<InvalidOperationException>(() => r.Write32(0, 1));
        Assert.Equal(0u, r.Read32(0));
    }

    [Fact]
    public void BulkCopiesRoundTrip()
    {
        using var r = Open(RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, [new SparseArea(0, 0x1000)]);
        var data = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        r.Write(0x100, data);    // mapped
        r.Write(0x1800, data);   // pwrite
        var back = new byte[256];
        r.Read(0x100, back);
        Assert.Equal(data, back);
        r.Read(0x1800, back);
        Assert.Equal(data, back);
    }
}
