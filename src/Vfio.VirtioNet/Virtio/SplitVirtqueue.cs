using System.Numerics;
using System.Runtime.CompilerServices;
using Vfio.Dma;

namespace Vfio.VirtioNet.Virtio;

/// <summary>Where the three parts of a split virtqueue lie within one contiguous block (virtio 1.2 §2.7).</summary>
/// <param name="Size">Queue size (entries), a power of two.</param>
/// <param name="DescriptorOffset">Descriptor table: 16 bytes per entry, 16-byte aligned (§2.7.5).</param>
/// <param name="AvailOffset">Driver area (available ring): flags, idx, ring[Size], used_event; 2-byte aligned (§2.7.6).</param>
/// <param name="UsedOffset">Device area (used ring): flags, idx, ring[Size] of {id, len}, avail_event; 4-byte aligned (§2.7.8).</param>
/// <param name="TotalSize">Bytes the block needs.</param>
public readonly record struct SplitQueueLayout(ushort Size, int DescriptorOffset, int AvailOffset, int UsedOffset, int TotalSize)
{
    /// <summary>Largest queue size a split virtqueue may have (§2.7).</summary>
    public const int MaxSize = 32768;

    /// <summary>
    /// Lays out a queue of <paramref name="size"/> entries. The used ring starts on a 64-byte boundary: the spec
    /// asks for 4, but keeping the device-written ring off the driver-written cache lines avoids false sharing.
    /// </summary>
    public static SplitQueueLayout For(int size)
    {
        if (size < 1 || size > MaxSize || !BitOperations.IsPow2(size))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a split virtqueue's size is a power of two from 1 to 32768 (virtio 1.2 §2.7)");
        }
        int desc = 0;
        int avail = desc + 16 * size;
        int used = Align(avail + 6 + 2 * size, 64);
        int total = Align(used + 6 + 8 * size, 64);
        return new SplitQueueLayout((ushort)size, desc, avail, used, total);
    }

    private static int Align(int value, int alignment) => (value + alignment - 1) & ~(alignment - 1);
}

/// <summary>Descriptor flags (virtio 1.2 §2.7.5).</summary>
[Flags]
public enum VirtqDescriptorFlags : ushort
{
    /// <summary>None: a device-readable buffer that ends its chain.</summary>
    None = 0,
    /// <summary>VIRTQ_DESC_F_NEXT: the chain continues at <c>next</c>.</summary>
    Next = 1,
    /// <summary>VIRTQ_DESC_F_WRITE: the device writes this buffer (otherwise it reads it).</summary>
    Write = 2,
    /// <summary>VIRTQ_DESC_F_INDIRECT: the buffer holds a table of descriptors.</summary>
    Indirect = 4,
}

/// <summary>One buffer of a descriptor chain.</summary>
/// <param name="Address">Device address of the buffer.</param>
/// <param name="Length">Length in bytes.</param>
/// <param name="DeviceWritable">True for buffers the device writes (receive buffers, replies).</param>
public readonly record struct VirtqBuffer(DmaAddress Address, uint Length, bool DeviceWritable);

/// <summary>
/// The driver's side of one split virtqueue (virtio 1.2 §2.7) over memory the device can reach. It owns the free
/// descriptor list and the driver's shadow indexes; the device owns the used ring. Indexes are free-running
/// 16-bit counters that wrap at 65536; ring slots are index mod size (§2.7.6, §2.7.8).
/// </summary>
/// <remarks>Not thread-safe: one thread drives a queue.</remarks>
public sealed unsafe class SplitVirtqueue
{
    private const int AvailFlagsOffset = 0, AvailIdxOffset = 2, AvailRingOffset = 4;
    private const int UsedFlagsOffset = 0, UsedIdxOffset = 2, UsedRingOffset = 4;
    /// <summary>VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7).</summary>
    public const ushort AvailNoInterrupt = 1;
    /// <summary>VIRTQ_USED_F_NO_NOTIFY (§2.7.10).</summary>
    public const ushort UsedNoNotify = 1;
    private const ushort EndOfList = 0xFFFF;

    private readonly byte* _desc;
    private readonly byte* _avail;
    private readonly byte* _used;
    private readonly ushort _mask;
    private ushort _freeHead;
    private int _freeCount;
    private ushort _availIdx;     // next avail->idx to publish
    private ushort _publishedIdx; // last avail->idx written to memory
    private ushort _lastUsed;     // next used slot to consume

    /// <summary>
    /// Wraps queue memory laid out as <paramref name="layout"/>. The memory must stay mapped for the queue's life
    /// and must be zero (a fresh DMA allocation is).
    /// </summary>
    /// <param name="layout">The queue's layout.</param>
    /// <param name="memory">The CPU's view of the block.</param>
    /// <param name="deviceAddress">The device's view of the block's first byte.</param>
    public SplitVirtqueue(SplitQueueLayout layout, nint memory, DmaAddress deviceAddress)
    {
        if (memory == 0) { throw new ArgumentNullException(nameof(memory)); }
        Layout = layout;
        // SAFETY: the caller hands over a block of Layout.TotalSize bytes that outlives this object.
        _desc = (byte*)memory + layout.DescriptorOffset;
        _avail = (byte*)memory + layout.AvailOffset;
        _used = (byte*)memory + layout.UsedOffset;
        _mask = (ushort)(layout.Size - 1);
        DescriptorTableAddress = deviceAddress + (ulong)layout.DescriptorOffset;
        AvailRingAddress = deviceAddress + (ulong)layout.AvailOffset;
        UsedRingAddress = deviceAddress + (ulong)layout.UsedOffset;
        ResetState();
    }

    /// <summary>The layout.</summary>
    public SplitQueueLayout Layout { get; }
    /// <summary>Entries.</summary>
    public ushort Size => Layout.Size;
    /// <summary>Device address of the descriptor table (queue_desc).</summary>
    public DmaAddress DescriptorTableAddress { get; }
    /// <summary>Device address of the driver area (queue_driver).</summary>
    public DmaAddress AvailRingAddress { get; }
    /// <summary>Device address of the device area (queue_device).</summary>
    public DmaAddress UsedRingAddress { get; }
    /// <summary>Descriptors not in use by the device.</summary>
    public int FreeDescriptors => _freeCount;
    /// <summary>The next available index the driver will publish.</summary>
    public ushort AvailIndex => _availIdx;
    /// <summary>The next used index the driver will consume.</summary>
    public ushort LastUsedIndex => _lastUsed;

    /// <summary>Entries between two free-running 16-bit indexes, <paramref name="from"/> up to <paramref name="to"/>, across the wrap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Distance(ushort from, ushort to) => unchecked((ushort)(to - from));

    /// <summary>The ring slot of free-running index <paramref name="index"/> in a queue of <paramref name="size"/> (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Slot(ushort index, ushort size) => index & (size - 1);

    /// <summary>Forgets every buffer and zeroes the rings: after a device reset, before the queue is handed to the device again.</summary>
    public void ResetState()
    {
        // SAFETY: the three areas lie inside the block given to the constructor.
        new Span<byte>(_desc, 16 * Size).Clear();
        new Span<byte>(_avail, 6 + 2 * Size).Clear();
        new Span<byte>(_used, 6 + 8 * Size).Clear();
        for (int i = 0; i < Size; i++)
        {
            // Free list threaded through the descriptors' next fields, as the device ignores them until published.
            *(ushort*)(_desc + 16 * i + 14) = i + 1 < Size ? (ushort)(i + 1) : EndOfList;
        }
        _freeHead = 0;
        _freeCount = Size;
        _availIdx = _publishedIdx = _lastUsed = 0;
    }

    /// <summary>
    /// Asks the device not to interrupt when it uses buffers (VIRTQ_AVAIL_F_NO_INTERRUPT, §2.7.7): a polling driver
    /// wants none. Only a hint without EVENT_IDX: the device may still interrupt.
    /// </summary>
    public void SetInterruptSuppression(bool suppress) =>
        Volatile.Write(ref *(ushort*)(_avail + AvailFlagsOffset), suppress ? AvailNoInterrupt : (ushort)0);

    /// <summary>
    /// Places one buffer in the next available slot (not yet visible to the device; see <see cref="Publish"/>).
    /// Returns the descriptor id the device will report in the used ring, or -1 when no descriptor is free.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Enqueue(ulong deviceAddress, uint length, VirtqDescriptorFlags flags)
    {
        if (_freeCount == 0) { return -1; }
        ushort id = _freeHead;
        byte* d = _desc + 16 * id;
        _freeHead = *(ushort*)(d + 14);
        _freeCount--;
        // §2.7.5 struct virtq_desc: le64 addr, le32 len, le16 flags, le16 next.
        *(ulong*)d = deviceAddress;
        *(uint*)(d + 8) = length;
        *(ushort*)(d + 12) = (ushort)(flags & ~VirtqDescriptorFlags.Next);
        *(ushort*)(_avail + AvailRingOffset + 2 * (_availIdx & _mask)) = id;
        _availIdx++;
        return id;
    }

    /// <summary>
    /// Places a chain of buffers (device-readable ones first, §2.7.4.2) in the next available slot. Returns the head
    /// descriptor id, or -1 when fewer than <c>buffers.Length</c> descriptors are free.
    /// </summary>
    public int EnqueueChain(ReadOnlySpan<VirtqBuffer> buffers)
    {
        if (buffers.IsEmpty) { throw new ArgumentException("a chain has at least one buffer", nameof(buffers)); }
        if (_freeCount < buffers.Length) { return -1; }
        ushort head = _freeHead;
        ushort id = head;
        for (int i = 0; i < buffers.Length; i++)
        {
            byte* d = _desc + 16 * id;
            ushort next = *(ushort*)(d + 14);
            *(ulong*)d = buffers[i].Address.Value;
            *(uint*)(d + 8) = buffers[i].Length;
            var flags = buffers[i].DeviceWritable ? VirtqDescriptorFlags.Write : VirtqDescriptorFlags.None;
            bool last = i == buffers.Length - 1;
            if (!last) { flags |= VirtqDescriptorFlags.Next; }
            *(ushort*)(d + 12) = (ushort)flags;
            // The free list's link doubles as the chain's next pointer; the last one keeps the rest of the list.
            if (last) { _freeHead = next; } else { id = next; }
        }
        _freeCount -= buffers.Length;
        *(ushort*)(_avail + AvailRingOffset + 2 * (_availIdx & _mask)) = head;
        _availIdx++;
        return head;
    }

    /// <summary>
    /// Makes every enqueued buffer visible to the device by writing avail->idx (§2.7.13 "Supplying Buffers to The
    /// Device", step 3). Returns true when there was something new.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Publish()
    {
        if (_availIdx == _publishedIdx) { return false; }
        // Release: the descriptors and ring entries written above must be visible before the new index (§2.7.13,
        // "the driver MUST perform a suitable memory barrier before the idx update").
        Volatile.Write(ref *(ushort*)(_avail + AvailIdxOffset), _availIdx);
        _publishedIdx = _availIdx;
        return true;
    }

    /// <summary>
    /// After <see cref="Publish"/>: whether the device wants a doorbell write. Without EVENT_IDX the device says so
    /// by leaving VIRTQ_USED_F_NO_NOTIFY clear in used->flags (§2.7.10).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool DeviceWantsNotification()
    {
        // Full barrier: the avail->idx store must be visible before the used->flags load, or the device could
        // re-enable notifications after we looked and never see the new buffers (§2.7.13 step 4, virtio_mb).
        Interlocked.MemoryBarrier();
        return (Volatile.Read(ref *(ushort*)(_used + UsedFlagsOffset)) & UsedNoNotify) == 0;
    }

    /// <summary>Used entries the device has returned that the driver has not consumed yet.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int UsedCount()
    {
        // Acquire: the used entries (and the data the device wrote into the buffers) are read only after the index.
        ushort idx = Volatile.Read(ref *(ushort*)(_used + UsedIdxOffset));
        return Distance(_lastUsed, idx);
    }

    /// <summary>
    /// Consumes the next used entry (call only when <see cref="UsedCount"/> said there is one): returns the head
    /// descriptor id and the bytes the device wrote, and puts the chain's descriptors back on the free list.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ushort TakeUsed(out uint length)
    {
        // §2.7.8 struct virtq_used_elem: le32 id, le32 len.
        byte* e = _used + UsedRingOffset + 8 * (_lastUsed & _mask);
        uint id = *(uint*)e;
        length = *(uint*)(e + 4);
        _lastUsed++;
        if (id > _mask) { ThrowBadId(id); }
        byte* d = _desc + 16 * id;
        if ((*(ushort*)(d + 12) & (ushort)VirtqDescriptorFlags.Next) == 0)
        {
            // A single-descriptor chain (every packet buffer): straight back on the free list.
            *(ushort*)(d + 14) = _freeHead;
            _freeHead = (ushort)id;
            _freeCount++;
        }
        else
        {
            FreeChain((ushort)id);
        }
        return (ushort)id;
    }

    private void ThrowBadId(uint id) =>
        throw new InvalidDataException($"the device returned descriptor id {id} in a queue of {Size}");

    private void FreeChain(ushort head)
    {
        ushort id = head;
        int n = 1;
        // Walk to the chain's end; its next field then links the free list.
        while ((*(ushort*)(_desc + 16 * id + 12) & (ushort)VirtqDescriptorFlags.Next) != 0)
        {
            id = *(ushort*)(_desc + 16 * id + 14);
            if (++n > Size) { throw new InvalidDataException("descriptor chain loops"); }
        }
        *(ushort*)(_desc + 16 * id + 14) = _freeHead;
        _freeHead = head;
        _freeCount += n;
    }
}
