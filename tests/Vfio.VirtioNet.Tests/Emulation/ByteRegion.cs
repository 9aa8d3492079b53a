using System.Buffers.Binary;
using Vfio.Devices;

namespace Vfio.VirtioNet.Tests.Emulation;

/// <summary>A region over a byte array (config space of emulated devices, recorded config dumps).</summary>
internal sealed class ByteRegion(byte[] bytes, int index = PciRegion.Config) : IDeviceRegion
{
    public byte[] Bytes { get; } = bytes;
    public RegionInfo Info { get; } = new() { Index = index, Flags = RegionFlags.Read | RegionFlags.Write, Size = (ulong)bytes.Length, Offset = 0 };
    public ulong Size => (ulong)Bytes.Length;
    public bool IsMapped(ulong offset) => false;
    public byte Read8(ulong o) => Bytes[o];
    public ushort Read16(ulong o) => BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan((int)o));
    public uint Read32(ulong o) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan((int)o));
    public ulong Read64(ulong o) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes.AsSpan((int)o));
    public void Write8(ulong o, byte v) => Bytes[o] = v;
    public void Write16(ulong o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(Bytes.AsSpan((int)o), v);
    public void Write32(ulong o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Bytes.AsSpan((int)o), v);
    public void Write64(ulong o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(Bytes.AsSpan((int)o), v);
    public void Read(ulong o, Span<byte> d) => Bytes.AsSpan((int)o, d.Length).CopyTo(d);
    public void Write(ulong o, ReadOnlySpan<byte> s) => s.CopyTo(Bytes.AsSpan((int)o));
    public void Dispose() { }
}
