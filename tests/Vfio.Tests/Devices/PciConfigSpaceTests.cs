using System.Buffers.Binary;
using Vfio.Devices;

namespace Vfio.Tests.Devices;

public class PciConfigSpaceTests
{
    /// <summary>
    /// Config space of QEMU's edu device as read through VFIO: 1234:11e8, status with the capability list bit,
    /// MSI capability at 0x40 (end of list).
    /// </summary>
    private static byte[] Edu()
    {
        var b = new byte[256];
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(0x00), 0x1234);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(0x02), 0x11e8);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(0x04), 0x0002);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(0x06), 0x0010);
        b[0x08] = 0x10; b[0x09] = 0x00; b[0x0a] = 0xff; b[0x0b] = 0x00;
        b[0x34] = 0x40;
        b[0x3d] = 1;
        b[0x40] = PciCapabilityId.Msi; b[0x41] = 0x00;
        return b;
    }

    [Fact]
    public void HeaderFieldsDecode()
    {
        var cfg = new PciConfigSpace(new MemoryRegion(Edu()));
        Assert.Equal(0x1234, cfg.VendorId);
        Assert.Equal(0x11e8, cfg.DeviceId);
        Assert.Equal(0x10, cfg.RevisionId);
        Assert.Equal(0x00ff00u, cfg.ClassCode);
        Assert.Equal(1, cfg.InterruptPin);
        Assert.True(cfg.MemorySpace);
        Assert.False(cfg.BusMaster);
    }

    [Fact]
    public void CapabilityWalkFindsMsi()
    {
        var cfg = new PciConfigSpace(new MemoryRegion(Edu()));
        Assert.Equal([new PciCapability(PciCapabilityId.Msi, 0x40)], cfg.Capabilities);
        Assert.Equal(0x40, cfg.FindCapability(PciCapabilityId.Msi)?.Offset);
        Assert.Null(cfg.FindCapability(PciCapabilityId.Msix));
    }

    [Fact]
    public void CapabilityWalkFollowsAChainAndMasksReservedPointerBits()
    {
        var b = Edu();
        b[0x34] = 0x43;                                    // low two bits are reserved
        b[0x40] = PciCapabilityId.PowerManagement; b[0x41] = 0x52;
        b[0x50] = PciCapabilityId.Msix; b[0x51] = 0x60;
        b[0x60] = PciCapabilityId.PciExpress; b[0x61] = 0x00;
        var caps = new PciConfigSpace(new MemoryRegion(b)).Capabilities;
        Assert.Equal([new(0x01, 0x40), new(0x11, 0x50), new(0x10, 0x60)], caps);
    }

    [Fact]
    public void LoopingOrWildCapabilityListsEnd()
    {
        var b = Edu();
        b[0x41] = 0x40;                                    // points at itself
        Assert.Single(new PciConfigSpace(new MemoryRegion(b)).Capabilities);
        b[0x41] = 0x20;                                    // into the header: invalid
        Assert.Single(new PciConfigSpace(new MemoryRegion(b)).Capabilities);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(0x06), 0);   // no capability list bit
        Assert.Empty(new PciConfigSpace(new MemoryRegion(b)).Capabilities);
    }

    [Fact]
    public void ExtendedCapabilitiesWalk()
    {
        var b = new byte[4096];
        Array.Copy(Edu(), b, 256);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(0x100), 0x0001u | (2u << 16) | (0x148u << 20));   // AER v2 -> 0x148
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(0x148), 0x0003u | (1u << 16) | (0x100u << 20));  // DSN v1 -> loops back
        var ext = new PciConfigSpace(new MemoryRegion(b)).ExtendedCapabilities;
        Assert.Equal([new(0x0001, 2, 0x100), new(0x0003, 1, 0x148)], ext);
        Assert.Empty(new PciConfigSpace(new MemoryRegion(Edu())).ExtendedCapabilities);
    }

    [Fact]
    public void BusMasterToggleIsOneReadModifyWriteOfTheCommandRegister()
    {
        var region = new MemoryRegion(Edu());
        var cfg = new PciConfigSpace(region);
        cfg.BusMaster = true;
        Assert.True(cfg.BusMaster);
        Assert.True(cfg.MemorySpace);                      // untouched
        cfg.BusMaster = false;
        Assert.Equal(PciCommand.MemorySpace, cfg.Command);
        Assert.All(region.Writes, w => Assert.Equal((0x04UL, 2), (w.Offset, w.Width)));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(255)]
    [InlineData(256)]
    public void OutOfRangeOrUnalignedOffsetsThrow(int offset)
    {
        var cfg = new PciConfigSpace(new MemoryRegion(Edu()));
        var e = Record.Exception(() => cfg.Read16(offset));
        Assert.True(e is ArgumentOutOfRangeException or ArgumentException, e?.GetType().Name);
        Assert.Equal(0x1234, cfg.VendorId);
    }
}
