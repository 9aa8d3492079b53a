using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Vfio.Devices;

namespace Vfio.User.Server;

/// <summary>
/// The configuration space of an emulated function: bytes, and a mask of the bits a write may change. Reads
/// return the bytes; a write changes only writable bits (PCI Local Bus 3.0 §6.1: read-only fields ignore
/// writes). BAR registers are writable only above their size, so the sizing probe (write all ones, read back)
/// reports the size. Capabilities are appended to the list from 0x40 on.
/// </summary>
public sealed class EmulatedConfigSpace
{
    private readonly byte[] _data;
    private readonly byte[] _writable;
    private readonly Lock _lock = new();
    private int _nextCapability = 0x40;
    private int _lastCapability;

    /// <summary>Creates a type 0 header with the given identity; the command register's decode, bus master and INTx-disable bits are writable.</summary>
    /// <param name="vendorId">Vendor ID.</param>
    /// <param name="deviceId">Device ID.</param>
    /// <param name="classCode">24-bit class code (base class, subclass, programming interface).</param>
    /// <param name="revision">Revision ID.</param>
    /// <param name="size">256 (conventional) or 4096 (PCIe extended).</param>
    public EmulatedConfigSpace(ushort vendorId, ushort deviceId, uint classCode, byte revision = 0, int size = PciConfigSpace.ConventionalSize)
    {
        if (size is not (PciConfigSpace.ConventionalSize or PciConfigSpace.ExtendedSize))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "config space is 256 or 4096 bytes");
        }
        _data = new byte[size];
        _writable = new byte[size];
        Set16(0x00, vendorId);
        Set16(0x02, deviceId);
        _data[0x08] = revision;
        Set32(0x08, (classCode << 8) | revision);
        var command = PciCommand.IoSpace | PciCommand.MemorySpace | PciCommand.BusMaster | PciCommand.IntxDisable;
        BinaryPrimitives.WriteUInt16LittleEndian(_writable.AsSpan(0x04), (ushort)command);
        _writable[0x3C] = 0xFF; // interrupt line: scratch for software
    }

    /// <summary>Size in bytes.</summary>
    public int Size => _data.Length;

    /// <summary>
    /// The command register (what the driver last wrote). Read without the lock: a model checks bus mastering before
    /// every DMA, from as many threads as it runs queues on, and the lock would make them take turns. The register is
    /// two aligned bytes of bits that each stand alone, so a read that races a write sees each bit before or after it.
    /// </summary>
    public PciCommand Command => (PciCommand)Volatile.Read(ref Unsafe.As<byte, ushort>(ref _data[0x04]));

    /// <summary>Sets subsystem IDs.</summary>
    public void SetSubsystem(ushort vendorId, ushort id)
    {
        Set16(0x2C, vendorId);
        Set16(0x2E, id);
    }

    /// <summary>Sets the interrupt pin (1 = INTA).</summary>
    public void SetInterruptPin(byte pin) => _data[0x3D] = pin;

    /// <summary>Declares a memory BAR of <paramref name="size"/> bytes (a power of two, at least 16).</summary>
    public void SetMemoryBar(int index, ulong size, bool is64Bit = false, bool prefetchable = false)
    {
        if ((uint)index > 5 || (is64Bit && index == 5)) { throw new ArgumentOutOfRangeException(nameof(index), index, "BARs are 0-5; a 64-bit BAR takes two"); }
        if (size < 16 || (size & (size - 1)) != 0) { throw new ArgumentOutOfRangeException(nameof(size), size, "a BAR's size is a power of two of at least 16"); }
        int offset = 0x10 + index * 4;
        uint low = (is64Bit ? 0b100u : 0) | (prefetchable ? 0b1000u : 0);
        Set32(offset, low);
        ulong mask = ~(size - 1);
        BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(offset), (uint)mask & ~0xFu);
        if (is64Bit)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_writable.AsSpan(offset + 4), (uint)(mask >> 32));
        }
    }

    /// <summary>
    /// Appends a capability: <paramref name="body"/> starts with the ID byte and a placeholder next pointer, which
    /// this method fills in; <paramref name="writableMask"/> (same length, or empty) says which bits software may write.
    /// </summary>
    /// <returns>The capability's offset.</returns>
    public int AddCapability(ReadOnlySpan<byte> body, ReadOnlySpan<byte> writableMask = default)
    {
        if (body.Length < 2) { throw new ArgumentException("a capability has at least an ID and a next pointer", nameof(body)); }
        int offset = _nextCapability;
        int length = (body.Length + 3) & ~3;
        if (offset + length > PciConfigSpace.ConventionalSize) { throw new InvalidOperationException("no room left for capabilities in conventional config space"); }
        body.CopyTo(_data.AsSpan(offset));
        _data[offset + 1] = 0;
        if (!writableMask.IsEmpty) { writableMask.CopyTo(_writable.AsSpan(offset)); }
        if (_lastCapability == 0)
        {
            _data[0x34] = (byte)offset;
            Set16(0x06, (ushort)(Read16(0x06) | (1 << 4))); // status: capabilities list present
        }
        else
        {
            _data[_lastCapability + 1] = (byte)offset;
        }
        _lastCapability = offset;
        _nextCapability = offset + length;
        return offset;
    }

    /// <summary>
    /// Adds an MSI capability (PCI Local Bus 3.0 §6.8.1) with 64-bit addresses and <paramref name="vectors"/> vectors
    /// (a power of two up to 32). The enable bit and multiple-message-enable field are writable.
    /// </summary>
    public int AddMsiCapability(int vectors)
    {
        if (vectors is < 1 or > 32 || (vectors & (vectors - 1)) != 0) { throw new ArgumentOutOfRangeException(nameof(vectors), vectors, "MSI offers 1-32 vectors, a power of two"); }
        Span<byte> cap = stackalloc byte[14];
        Span<byte> mask = stackalloc byte[14];
        cap.Clear(); mask.Clear();
        cap[0] = PciCapabilityId.Msi;
        int mmc = System.Numerics.BitOperations.Log2((uint)vectors);
        BinaryPrimitives.WriteUInt16LittleEndian(cap[2..], (ushort)((mmc << 1) | (1 << 7)));  // bit 7: 64-bit capable
        BinaryPrimitives.WriteUInt16LittleEndian(mask[2..], 0x71);                            // enable, multiple message enable
        BinaryPrimitives.WriteUInt32LittleEndian(mask[4..], 0xFFFF_FFFC);                     // message address (dword-aligned)
        BinaryPrimitives.WriteUInt32LittleEndian(mask[8..], 0xFFFF_FFFF);                     // upper address
        BinaryPrimitives.WriteUInt16LittleEndian(mask[12..], 0xFFFF);                         // message data
        return AddCapability(cap, mask);
    }

    /// <summary>
    /// Adds an MSI-X capability (PCI Local Bus 3.0 §6.8.2): <paramref name="vectors"/> table entries in BAR
    /// <paramref name="tableBar"/> at <paramref name="tableOffset"/>, pending bits in <paramref name="pbaBar"/> at
    /// <paramref name="pbaOffset"/>. Enable and function-mask bits are writable.
    /// </summary>
    public int AddMsixCapability(int vectors, int tableBar, uint tableOffset, int pbaBar, uint pbaOffset)
    {
        if (vectors is < 1 or > 2048) { throw new ArgumentOutOfRangeException(nameof(vectors), vectors, "MSI-X offers 1-2048 vectors"); }
        Span<byte> cap = stackalloc byte[12];
        Span<byte> mask = stackalloc byte[12];
        cap.Clear(); mask.Clear();
        cap[0] = PciCapabilityId.Msix;
        BinaryPrimitives.WriteUInt16LittleEndian(cap[2..], (ushort)(vectors - 1));
        BinaryPrimitives.WriteUInt16LittleEndian(mask[2..], 0xC000);
        BinaryPrimitives.WriteUInt32LittleEndian(cap[4..], tableOffset | (uint)tableBar);
        BinaryPrimitives.WriteUInt32LittleEndian(cap[8..], pbaOffset | (uint)pbaBar);
        return AddCapability(cap, mask);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/> (range already checked).</summary>
    public void Read(int offset, Span<byte> destination)
    {
        lock (_lock) { _data.AsSpan(offset, destination.Length).CopyTo(destination); }
    }

    /// <summary>Writes bytes at <paramref name="offset"/>; only writable bits change.</summary>
    public void Write(int offset, ReadOnlySpan<byte> source)
    {
        lock (_lock)
        {
            for (int i = 0; i < source.Length; i++)
            {
                byte m = _writable[offset + i];
                _data[offset + i] = (byte)((_data[offset + i] & ~m) | (source[i] & m));
            }
        }
    }

    /// <summary>Reads 16 bits.</summary>
    public ushort Read16(int offset)
    {
        lock (_lock) { return BinaryPrimitives.ReadUInt16LittleEndian(_data.AsSpan(offset)); }
    }

    /// <summary>Reads 32 bits.</summary>
    public uint Read32(int offset)
    {
        lock (_lock) { return BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(offset)); }
    }

    private void Set16(int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_data.AsSpan(offset), value);

    private void Set32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_data.AsSpan(offset), value);
}
