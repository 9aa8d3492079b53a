using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vfio.Dma;
using Vfio.Spec.Virtio;

namespace Vfio.VirtioNet.Virtio;

/// <summary>Where the three parts of a split virtqueue lie within one contiguous block (virtio 1.2 §2.7).</summary>
/// <param name="Size">Queue size (entries), a power of two.</param>
/// <param name="DescriptorOffset">Descriptor table: 16 bytes per entry, 16-byte aligned (§2.7.5).</param>
/// <param name="AvailOffset">Driver area (available ring): flags, idx, ring[Size], used_event; 2-byte aligned (§2.7.6).</param>
/// <param name="UsedOffset">Device area (used ring): flags, idx, ring[Size] of {id, len}, avail_event; 4-byte aligned (§2.7.8).</param>
/// <param name="TotalSize">Bytes the block needs.</param>
public readonly record struct SplitQueueLayout(ushort Size, int DescriptorOffset, int AvailOffset, int UsedOffset, int TotalSize)
{
    /// <summary>
    /// Lays out a queue of <paramref name="size"/> entries. The used ring starts on a 64-byte boundary: the spec
    /// asks for 4, but keeping the device-written ring off the driver-written cache lines avoids false sharing.
    /// </summary>
    public static SplitQueueLayout For(int size)
    {
        if (!SplitVirtq.IsValidQueueSize(size))
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "a split virtqueue's size is a power of two from 1 to 32768 (virtio 1.2 §2.7)");
        }
        int desc = 0;
        // The table is a multiple of 16 bytes, so the driver area after it is aligned (2 needed).
        int avail = desc + VirtqDescriptorLayout.TableSize(size);
        int used = Align(avail + VirtqAvailLayout.AreaSize(size), 64);
        int total = Align(used + VirtqUsedLayout.AreaSize(size), 64);
        return new SplitQueueLayout((ushort)size, desc, avail, used, total);
    }

    private static int Align(int value, int alignment) => (value + alignment - 1) & ~(alignment - 1);
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
/// <remarks>
/// <para>
/// For every chain the device holds, the queue keeps two things, each with one meaning, in managed arrays the
/// device cannot reach (never in the rings):
/// </para>
/// <list type="bullet">
/// <item><description><b>in-flight state</b> (driver-private): whether the head is with the device, how many
/// descriptors its chain has and which is its last. <see cref="TakeUsed"/> frees a chain from this, without
/// walking flags in device-reachable memory, and rejects a used id the driver never made available.</description></item>
/// <item><description><b>the caller's token</b>: an integer the caller hands to <see cref="Enqueue"/> or
/// <see cref="EnqueueChain"/> (the virtio-net driver passes the packet the buffer belongs to) and gets back from
/// <see cref="TakeUsed"/> or <see cref="ReleaseInFlight"/>. The queue never interprets it.</description></item>
/// </list>
/// <para>Not thread-safe: one thread drives a queue.</para>
/// </remarks>
public sealed unsafe class SplitVirtqueue
{
    private const ushort EndOfList = 0xFFFF;

    private readonly byte* _desc;
    private readonly byte* _avail;
    private readonly byte* _used;
    private readonly ushort _mask;
    private readonly InFlightChain[] _inFlight;
    private readonly int[] _tokens;
    private ushort _freeHead;
    private int _freeCount;
    private ushort _availIdx;     // next avail->idx to publish
    private ushort _publishedIdx; // last avail->idx written to memory
    private ushort _lastUsed;     // next used slot to consume

    /// <summary>In-flight state of one chain head: descriptors in the chain (0 = not with the device) and its last one.</summary>
    private struct InFlightChain
    {
        public ushort Descriptors;
        public ushort Tail;
    }

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
        _inFlight = new InFlightChain[layout.Size];
        _tokens = new int[layout.Size];
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

    /// <summary>True while the chain headed by descriptor <paramref name="head"/> has been made available and not yet taken back.</summary>
    public bool IsInFlight(int head) => (uint)head < (uint)Size && _inFlight[head].Descriptors != 0;

    /// <summary>
    /// Forgets every buffer and zeroes the rings: after a device reset, before the queue is handed to the device
    /// again. Tokens still in flight are dropped; call <see cref="ReleaseInFlight"/> first to get them back.
    /// </summary>
    public void ResetState()
    {
        // SAFETY: the three areas lie inside the block given to the constructor.
        new Span<byte>(_desc, VirtqDescriptorLayout.TableSize(Size)).Clear();
        new Span<byte>(_avail, VirtqAvailLayout.AreaSize(Size)).Clear();
        new Span<byte>(_used, VirtqUsedLayout.AreaSize(Size)).Clear();
        for (int i = 0; i < Size; i++)
        {
            // Free list threaded through the descriptors' next fields, as the device ignores them until published.
            SetNext((ushort)i, i + 1 < Size ? (ushort)(i + 1) : EndOfList);
        }
        Array.Clear(_inFlight);
        Array.Clear(_tokens);
        _freeHead = 0;
        _freeCount = Size;
        _availIdx = _publishedIdx = _lastUsed = 0;
    }

    /// <summary>
    /// Asks the device not to interrupt when it uses buffers (VIRTQ_AVAIL_F_NO_INTERRUPT, §2.7.7): a polling driver
    /// wants none. Only a hint without EVENT_IDX: the device may still interrupt.
    /// </summary>
    public void SetInterruptSuppression(bool suppress) =>
        Volatile.Write(ref *(ushort*)(_avail + VirtqAvailLayout.Flags), (ushort)(suppress ? VirtqAvailFlags.NoInterrupt : VirtqAvailFlags.None));

    /// <summary>
    /// Places one buffer in the next available slot (not yet visible to the device; see <see cref="Publish"/>).
    /// Returns the descriptor id the device will report in the used ring, or -1 when no descriptor is free.
    /// </summary>
    /// <param name="address">Device address of the buffer.</param>
    /// <param name="length">Its length in bytes.</param>
    /// <param name="flags">WRITE for a device-writable buffer; NEXT is ignored (one buffer ends its chain).</param>
    /// <param name="token">The caller's token, returned by <see cref="TakeUsed"/> when the device is done with the buffer.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Enqueue(DmaAddress address, uint length, VirtqDescriptorFlags flags, int token = 0)
    {
        if (_freeCount == 0) { return -1; }
        ushort id = _freeHead;
        _freeHead = NextOf(id);
        _freeCount--;
        WriteDescriptor(id, address, length, flags & ~VirtqDescriptorFlags.Next);
        Track(id, 1, id, token);
        MakeAvailable(id);
        return id;
    }

    /// <summary>
    /// Places a chain of buffers (device-readable ones first, §2.7.4.2) in the next available slot. Returns the head
    /// descriptor id, or -1 when fewer than <c>buffers.Length</c> descriptors are free.
    /// </summary>
    /// <param name="buffers">The chain's buffers, in order.</param>
    /// <param name="token">The caller's token, returned by <see cref="TakeUsed"/> when the device is done with the chain.</param>
    public int EnqueueChain(ReadOnlySpan<VirtqBuffer> buffers, int token = 0)
    {
        if (buffers.IsEmpty) { throw new ArgumentException("a chain has at least one buffer", nameof(buffers)); }
        if (_freeCount < buffers.Length) { return -1; }
        ushort head = _freeHead;
        ushort id = head;
        for (int i = 0; i < buffers.Length; i++)
        {
            ushort next = NextOf(id);
            var flags = buffers[i].DeviceWritable ? VirtqDescriptorFlags.Write : VirtqDescriptorFlags.None;
            bool last = i == buffers.Length - 1;
            if (!last) { flags |= VirtqDescriptorFlags.Next; }
            WriteDescriptor(id, buffers[i].Address, buffers[i].Length, flags);
            // The free list's link doubles as the chain's next pointer; the last one keeps the rest of the list.
            if (last) { _freeHead = next; } else { id = next; }
        }
        _freeCount -= buffers.Length;
        Track(head, (ushort)buffers.Length, id, token);
        MakeAvailable(head);
        return head;
    }

    /// <summary>
    /// Writes addr, len and flags of <c>struct virtq_desc</c> (§2.7.5): the one place a buffer's
    /// <see cref="DmaAddress"/> becomes the ring's le64. The next field belongs to the free list and the chains.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteDescriptor(ushort id, DmaAddress address, uint length, VirtqDescriptorFlags flags)
    {
        // SAFETY: id < Size, so the 16 bytes lie inside the descriptor table.
        byte* d = _desc + VirtqDescriptorLayout.Size * id;
        *(ulong*)(d + VirtqDescriptorLayout.Address) = address.Value;
        *(uint*)(d + VirtqDescriptorLayout.Length) = length;
        *(ushort*)(d + VirtqDescriptorLayout.Flags) = (ushort)flags;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ushort NextOf(ushort id) => *(ushort*)(_desc + VirtqDescriptorLayout.Size * id + VirtqDescriptorLayout.Next);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void SetNext(ushort id, ushort next) => *(ushort*)(_desc + VirtqDescriptorLayout.Size * id + VirtqDescriptorLayout.Next) = next;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Track(ushort head, ushort descriptors, ushort tail, int token)
    {
        // SAFETY (no bounds check): head and tail came off the free list, which holds ids below Size only.
        ref var chain = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_inFlight), head);
        chain.Descriptors = descriptors;
        chain.Tail = tail;
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_tokens), head) = token;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void MakeAvailable(ushort head)
    {
        *(ushort*)(_avail + VirtqAvailLayout.EntryOffset(_availIdx & _mask)) = head;
        _availIdx++;
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
        Volatile.Write(ref *(ushort*)(_avail + VirtqAvailLayout.Index), _availIdx);
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
        return (Volatile.Read(ref *(ushort*)(_used + VirtqUsedLayout.Flags)) & (ushort)VirtqUsedFlags.NoNotify) == 0;
    }

    /// <summary>Used entries the device has returned that the driver has not consumed yet.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int UsedCount()
    {
        // Acquire: the used entries (and the data the device wrote into the buffers) are read only after the index.
        ushort idx = Volatile.Read(ref *(ushort*)(_used + VirtqUsedLayout.Index));
        return Distance(_lastUsed, idx);
    }

    /// <summary>
    /// Consumes the next used entry (call only when <see cref="UsedCount"/> said there is one): returns the token
    /// the chain was enqueued with and the bytes the device wrote, and puts the chain's descriptors back on the
    /// free list.
    /// </summary>
    /// <exception cref="InvalidDataException">The device returned an id outside the ring, or one not in flight.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int TakeUsed(out uint length)
    {
        // §2.7.8 struct virtq_used_elem: le32 id, le32 len.
        byte* e = _used + VirtqUsedLayout.ElementOffset(_lastUsed & _mask);
        uint id = *(uint*)(e + VirtqUsedLayout.ElementId);
        length = *(uint*)(e + VirtqUsedLayout.ElementLength);
        _lastUsed++;
        if (id > _mask) { ThrowBadId(id); }
        // SAFETY (no bounds check): id <= _mask < Size, the length of both arrays.
        ref var chain = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_inFlight), (int)id);
        if (chain.Descriptors == 0) { ThrowNotInFlight(id); }
        // The chain's last descriptor links it in front of the free list (its own next links still hold).
        SetNext(chain.Tail, _freeHead);
        _freeHead = (ushort)id;
        _freeCount += chain.Descriptors;
        chain = default;
        return Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_tokens), (int)id);
    }

    /// <summary>
    /// Gives the token of every chain still in flight to <paramref name="release"/> and puts their descriptors back
    /// on the free list. Only once the device uses no more buffers: after a reset (§4.1.4.3.2), before
    /// <see cref="ResetState"/>.
    /// </summary>
    public void ReleaseInFlight(Action<int> release)
    {
        ArgumentNullException.ThrowIfNull(release);
        for (int head = 0; head < Size; head++)
        {
            ref var chain = ref _inFlight[head];
            if (chain.Descriptors == 0) { continue; }
            SetNext(chain.Tail, _freeHead);
            _freeHead = (ushort)head;
            _freeCount += chain.Descriptors;
            chain = default;
            release(_tokens[head]);
        }
    }

    private void ThrowBadId(uint id) =>
        throw new InvalidDataException($"the device returned descriptor id {id} in a queue of {Size}");

    private static void ThrowNotInFlight(uint id) =>
        throw new InvalidDataException($"the device returned descriptor id {id}, which the driver had not made available");
}
