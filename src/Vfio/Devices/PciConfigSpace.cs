namespace Vfio.Devices;

/// <summary>A capability in the standard list (PCI Local Bus 3.0 §6.7): its ID and offset in config space.</summary>
/// <param name="Id">Capability ID (e.g. 0x05 MSI, 0x10 PCI Express, 0x11 MSI-X).</param>
/// <param name="Offset">Offset of the capability header.</param>
public readonly record struct PciCapability(byte Id, int Offset);

/// <summary>An extended capability (PCIe Base 6.0 §7.6): ID, version and offset (at or above 0x100).</summary>
/// <param name="Id">Extended capability ID (e.g. 0x0001 AER).</param>
/// <param name="Version">Capability version.</param>
/// <param name="Offset">Offset of the header.</param>
public readonly record struct PciExtendedCapability(ushort Id, byte Version, int Offset);

/// <summary>Standard capability IDs used by the library and its drivers.</summary>
public static class PciCapabilityId
{
    /// <summary>Power management.</summary>
    public const byte PowerManagement = 0x01;
    /// <summary>MSI.</summary>
    public const byte Msi = 0x05;
    /// <summary>Vendor specific (virtio uses these).</summary>
    public const byte VendorSpecific = 0x09;
    /// <summary>PCI Express.</summary>
    public const byte PciExpress = 0x10;
    /// <summary>MSI-X.</summary>
    public const byte Msix = 0x11;
}

/// <summary>Bits of the command register (PCI Local Bus 3.0 §6.2.2).</summary>
[Flags]
public enum PciCommand : ushort
{
    /// <summary>None.</summary>
    None = 0,
    /// <summary>Bit 0: respond to I/O space accesses.</summary>
    IoSpace = 1 << 0,
    /// <summary>Bit 1: respond to memory space accesses.</summary>
    MemorySpace = 1 << 1,
    /// <summary>Bit 2: the device may master the bus, i.e. DMA.</summary>
    BusMaster = 1 << 2,
    /// <summary>Bit 10: INTx disable.</summary>
    IntxDisable = 1 << 10,
}

/// <summary>
/// Typed view of a device's configuration space. Offsets and widths follow the PCI Local Bus 3.0 type 0
/// header (§6.1); capability walks guard against loops and out-of-range pointers that broken or hostile
/// devices present.
/// </summary>
public sealed class PciConfigSpace
{
    /// <summary>Size of conventional config space.</summary>
    public const int ConventionalSize = 256;
    /// <summary>Size of PCIe extended config space.</summary>
    public const int ExtendedSize = 4096;

    private const int VendorIdOffset = 0x00, DeviceIdOffset = 0x02, CommandOffset = 0x04, StatusOffset = 0x06,
        RevisionOffset = 0x08, ClassOffset = 0x09, HeaderTypeOffset = 0x0E, SubsystemVendorOffset = 0x2C,
        SubsystemIdOffset = 0x2E, CapPointerOffset = 0x34, InterruptLineOffset = 0x3C, InterruptPinOffset = 0x3D;
    private const ushort StatusCapabilitiesList = 1 << 4;

    private readonly IDeviceRegion _region;

    /// <summary>Wraps the config region of a device.</summary>
    public PciConfigSpace(IDeviceRegion region) => _region = region ?? throw new ArgumentNullException(nameof(region));

    /// <summary>Size of the config region the kernel exposes (256 or 4096).</summary>
    public ulong Size => _region.Size;

    /// <summary>Reads 8 bits at <paramref name="offset"/>.</summary>
    public byte Read8(int offset) => _region.Read8(Check(offset, 1));
    /// <summary>Reads 16 bits at <paramref name="offset"/>.</summary>
    public ushort Read16(int offset) => _region.Read16(Check(offset, 2));
    /// <summary>Reads 32 bits at <paramref name="offset"/>.</summary>
    public uint Read32(int offset) => _region.Read32(Check(offset, 4));
    /// <summary>Writes 8 bits at <paramref name="offset"/>.</summary>
    public void Write8(int offset, byte value) => _region.Write8(Check(offset, 1), value);
    /// <summary>Writes 16 bits at <paramref name="offset"/>.</summary>
    public void Write16(int offset, ushort value) => _region.Write16(Check(offset, 2), value);
    /// <summary>Writes 32 bits at <paramref name="offset"/>.</summary>
    public void Write32(int offset, uint value) => _region.Write32(Check(offset, 4), value);

    /// <summary>Vendor ID.</summary>
    public ushort VendorId => Read16(VendorIdOffset);
    /// <summary>Device ID.</summary>
    public ushort DeviceId => Read16(DeviceIdOffset);
    /// <summary>Revision ID.</summary>
    public byte RevisionId => Read8(RevisionOffset);
    /// <summary>Class code, 24 bits: base class, subclass, programming interface.</summary>
    public uint ClassCode => Read32(RevisionOffset) >> 8;
    /// <summary>Header type (bit 7: multi-function).</summary>
    public byte HeaderType => Read8(HeaderTypeOffset);
    /// <summary>Subsystem vendor ID (type 0 header).</summary>
    public ushort SubsystemVendorId => Read16(SubsystemVendorOffset);
    /// <summary>Subsystem ID (type 0 header).</summary>
    public ushort SubsystemId => Read16(SubsystemIdOffset);
    /// <summary>Status register.</summary>
    public ushort Status => Read16(StatusOffset);
    /// <summary>Interrupt pin (0: none, 1-4: INTA-INTD).</summary>
    public byte InterruptPin => Read8(InterruptPinOffset);
    /// <summary>Interrupt line.</summary>
    public byte InterruptLine => Read8(InterruptLineOffset);

    /// <summary>The command register.</summary>
    public PciCommand Command
    {
        get => (PciCommand)Read16(CommandOffset);
        set => Write16(CommandOffset, (ushort)value);
    }

    /// <summary>Sets or clears bits of the command register with one read-modify-write.</summary>
    public void UpdateCommand(PciCommand set, PciCommand clear = PciCommand.None) =>
        Command = (Command & ~clear) | set;

    /// <summary>Enables or disables bus mastering (DMA). Disabling stops the device from starting new DMA.</summary>
    public bool BusMaster
    {
        get => (Command & PciCommand.BusMaster) != 0;
        set => UpdateCommand(value ? PciCommand.BusMaster : PciCommand.None, value ? PciCommand.None : PciCommand.BusMaster);
    }

    /// <summary>Enables or disables decoding of memory BARs.</summary>
    public bool MemorySpace
    {
        get => (Command & PciCommand.MemorySpace) != 0;
        set => UpdateCommand(value ? PciCommand.MemorySpace : PciCommand.None, value ? PciCommand.None : PciCommand.MemorySpace);
    }

    /// <summary>Disables (true) or enables (false) INTx assertion.</summary>
    public bool IntxDisabled
    {
        get => (Command & PciCommand.IntxDisable) != 0;
        set => UpdateCommand(value ? PciCommand.IntxDisable : PciCommand.None, value ? PciCommand.None : PciCommand.IntxDisable);
    }

    /// <summary>Walks the standard capability list.</summary>
    public IReadOnlyList<PciCapability> Capabilities =>
        WalkCapabilities((Status & StatusCapabilitiesList) != 0, Read8(CapPointerOffset), o => Read16(o));

    /// <summary>Walks the extended capability list (empty when config space is 256 bytes).</summary>
    public IReadOnlyList<PciExtendedCapability> ExtendedCapabilities =>
        Size < ExtendedSize ? [] : WalkExtendedCapabilities(o => Read32(o));

    /// <summary>The first capability with <paramref name="id"/>, or null.</summary>
    public PciCapability? FindCapability(byte id)
    {
        foreach (var c in Capabilities)
        {
            if (c.Id == id) { return c; }
        }
        return null;
    }

    /// <summary>The first extended capability with <paramref name="id"/>, or null (always null with 256-byte config space).</summary>
    public PciExtendedCapability? FindExtendedCapability(ushort id)
    {
        foreach (var c in ExtendedCapabilities)
        {
            if (c.Id == id) { return c; }
        }
        return null;
    }

    /// <summary>
    /// The Advanced Error Reporting capability (extended capability 0001h, PCIe Base 6.0 §7.8.4), or null when the
    /// function has none (conventional PCI, or a PCIe function without AER).
    /// </summary>
    public AerCapability? FindAer() =>
        FindExtendedCapability(PciExtendedCapabilityId.AdvancedErrorReporting) is { } c ? new AerCapability(this, c) : null;

    /// <summary>
    /// Walks a standard capability list given a reader of 16-bit words (ID in the low byte, next pointer in
    /// the high byte). Pointers are dword-aligned (low two bits reserved) and must lie in 0x40..0xFF; the
    /// walk stops at 48 entries, the most that fit, so a looping list ends.
    /// </summary>
    public static IReadOnlyList<PciCapability> WalkCapabilities(bool hasList, byte first, Func<int, ushort> read16)
    {
        var list = new List<PciCapability>();
        if (!hasList) { return list; }
        int ptr = first & 0xFC;
        var seen = new HashSet<int>();
        while (ptr >= 0x40 && ptr < ConventionalSize && list.Count < 48 && seen.Add(ptr))
        {
            ushort header = read16(ptr);
            list.Add(new PciCapability((byte)header, ptr));
            ptr = (header >> 8) & 0xFC;
        }
        return list;
    }

    /// <summary>
    /// Walks the extended capability list starting at 0x100, given a reader of 32-bit headers
    /// (ID bits 15:0, version 19:16, next 31:20). An all-zero or all-ones first header means none.
    /// </summary>
    public static IReadOnlyList<PciExtendedCapability> WalkExtendedCapabilities(Func<int, uint> read32)
    {
        var list = new List<PciExtendedCapability>();
        int ptr = ConventionalSize;
        var seen = new HashSet<int>();
        while (ptr >= ConventionalSize && ptr < ExtendedSize && list.Count < (ExtendedSize - ConventionalSize) / 4 && seen.Add(ptr))
        {
            uint header = read32(ptr);
            if (header == 0 || header == 0xFFFF_FFFF) { break; }
            list.Add(new PciExtendedCapability((ushort)header, (byte)((header >> 16) & 0xF), ptr));
            ptr = (int)(header >> 20) & 0xFFC;
        }
        return list;
    }

    private ulong Check(int offset, int width)
    {
        if (offset < 0 || (ulong)(offset + width) > _region.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"config space offset must be within 0..{_region.Size - (ulong)width}");
        }
        if (offset % width != 0)
        {
            throw new ArgumentException($"config space access of {width} bytes at 0x{offset:x} is not naturally aligned", nameof(offset));
        }
        return (ulong)offset;
    }
}
