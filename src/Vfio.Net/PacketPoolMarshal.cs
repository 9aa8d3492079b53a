using System.Runtime.CompilerServices;
using Vfio.Dma;

namespace Vfio.Net;

/// <summary>
/// The per-buffer state of a <see cref="PacketPool"/> for NIC drivers, unchecked as <c>MemoryMarshal</c> is: the
/// index must be one this pool handed out (taken from a <see cref="PacketBuffer"/> of the pool, or a ring token the
/// driver made from one), and nothing verifies it, because these calls run once per packet. Applications use
/// <see cref="PacketBuffer"/> instead.
/// </summary>
public static class PacketPoolMarshal
{
    /// <summary>The handle of buffer <paramref name="index"/> of the pool numbered <paramref name="poolId"/> (<see cref="PacketPool.Id"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PacketBuffer CreateBuffer(int poolId, int index) => new(poolId, index);

    /// <summary>A packet's handle as one integer, for a ring's token (pool number in bits 24-31, index in bits 0-23).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetHandle(PacketBuffer packet) => packet.Handle;

    /// <summary>The packet an integer from <see cref="GetHandle"/> names.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static PacketBuffer FromHandle(int handle) => PacketBuffer.FromHandle(handle);

    /// <summary>The number of the pool a packet belongs to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetPoolId(PacketBuffer packet) => packet.PoolId;

    /// <summary>Where buffer <paramref name="index"/> starts in this process (its headroom first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint GetPointer(PacketPool pool, int index) => pool.PointerOf(index);

    /// <summary>Where buffer <paramref name="index"/> starts for the device (its headroom first).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DmaAddress GetDeviceAddress(PacketPool pool, int index) => pool.DeviceAddressOf(index);

    /// <summary>Buffer <paramref name="index"/>'s data length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetLength(PacketPool pool, int index) => pool.LengthOf(index);

    /// <summary>Sets buffer <paramref name="index"/>'s data length; the driver has checked it against <see cref="PacketPool.DataRoom"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SetLength(PacketPool pool, int index, int length) => pool.SetLength(index, length);

    /// <summary>Buffer <paramref name="index"/>'s offload flags, to read (transmit) or write (receive).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref PacketFlags GetFlags(PacketPool pool, int index) => ref pool.FlagsOf(index);

    /// <summary>Buffer <paramref name="index"/>'s RSS hash, written on receive with <see cref="PacketFlags.RssHash"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref uint GetRssHash(PacketPool pool, int index) => ref pool.RssHashOf(index);

    /// <summary>The buffer's segment size (<see cref="PacketBuffer.SegmentSize"/>), without the handle's pool lookup.</summary>
    public static ref ushort GetSegmentSize(PacketPool pool, int index) => ref pool.SegmentSizeOf(index);

    /// <summary>Returns buffer <paramref name="index"/> to its pool (checked: a free buffer throws <see cref="PacketPoolDoubleFreeException"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void FreeIndex(PacketPool pool, int index) => pool.FreeIndex(index);

    /// <summary>Returns the buffer a handle from <see cref="GetHandle"/> names to its pool (checked as <see cref="FreeIndex"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void FreeHandle(int handle) => PacketPool.FreeHandle(handle);

    /// <summary>The DMA audit's view of buffer <paramref name="index"/>: its bytes while allocated, no buffer once freed.</summary>
    public static DmaWindow GetLeaseWindow(PacketPool pool, int index) => pool.WindowOf(index);

    /// <summary>As <see cref="GetLeaseWindow(PacketPool, int)"/> for a handle from <see cref="GetHandle"/>, whatever pool it names (none when that pool is gone).</summary>
    public static DmaWindow GetLeaseWindowOfHandle(int handle) => PacketPool.WindowOfHandle(handle);
}
