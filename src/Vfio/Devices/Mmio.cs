namespace Vfio.Devices;

/// <summary>
/// Exact-width volatile accesses to device memory. A volatile access of a naturally aligned primitive is one
/// load or store instruction on x86-64 and arm64, so the device sees one transaction of that width, and the
/// JIT may not merge, split, reorder or drop it.
/// </summary>
public static class Mmio
{
    /// <summary>Reads a byte.</summary>
    public static unsafe byte Read8(nint address) =>
        // SAFETY: callers pass an address inside a live mapping, checked for bounds and alignment.
        Volatile.Read(ref *(byte*)address);

    /// <summary>Reads 16 bits.</summary>
    public static unsafe ushort Read16(nint address) =>
        // SAFETY: as Read8; address is 2-byte aligned.
        Volatile.Read(ref *(ushort*)address);

    /// <summary>Reads 32 bits.</summary>
    public static unsafe uint Read32(nint address) =>
        // SAFETY: as Read8; address is 4-byte aligned.
        Volatile.Read(ref *(uint*)address);

    /// <summary>Reads 64 bits.</summary>
    public static unsafe ulong Read64(nint address) =>
        // SAFETY: as Read8; address is 8-byte aligned.
        Volatile.Read(ref *(ulong*)address);

    /// <summary>Writes a byte.</summary>
    public static unsafe void Write8(nint address, byte value) =>
        // SAFETY: callers pass an address inside a live mapping, checked for bounds and alignment.
        Volatile.Write(ref *(byte*)address, value);

    /// <summary>Writes 16 bits.</summary>
    public static unsafe void Write16(nint address, ushort value) =>
        // SAFETY: as Write8; address is 2-byte aligned.
        Volatile.Write(ref *(ushort*)address, value);

    /// <summary>Writes 32 bits.</summary>
    public static unsafe void Write32(nint address, uint value) =>
        // SAFETY: as Write8; address is 4-byte aligned.
        Volatile.Write(ref *(uint*)address, value);

    /// <summary>Writes 64 bits.</summary>
    public static unsafe void Write64(nint address, ulong value) =>
        // SAFETY: as Write8; address is 8-byte aligned.
        Volatile.Write(ref *(ulong*)address, value);
}
