using System.Diagnostics.CodeAnalysis;
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
/// What each token given to a <see cref="SplitVirtqueue"/> leases, for the DMA audit (<see cref="DmaAudit"/>): the
/// part of a DMA buffer the chain enqueued with that token may point the device at.
/// </summary>
public interface IVirtqueueLeases
{
    /// <summary>The window leased to the chain with <paramref name="token"/>; no buffer when the token leases none (a freed packet).</summary>
    DmaWindow LeaseOf(int token);
}

/// <summary>
/// The driver's side of one split virtqueue (virtio 1.2 §2.7) over memory the device can reach. Indexes are
/// free-running 16-bit counters that wrap at 65536; ring slots are index mod size (§2.7.6, §2.7.8).
/// </summary>
/// <remarks>
/// <para>
/// Everything the driver relies on lives in managed arrays the device cannot reach, as Linux keeps it in
/// <c>desc_extra</c>/<c>desc_state</c> (drivers/virtio/virtio_ring.c): the free list and the chain links, and for
/// each chain head whether it is in flight, how many descriptors it has, its last one, the bytes the device may
/// report as used and the caller's token. The descriptor table is written from that state at submit and never read
/// back; a device that rewrites <c>next</c>, <c>addr</c> or <c>flags</c> changes nothing the driver does.
/// </para>
/// <para>
/// Every value the device writes is checked before use (§2.7.8 "The Virtqueue Used Ring"): used idx may run ahead of
/// the last consumed entry by no more than the chains in flight (so never by more than the queue size), a used id
/// names a chain head that is in flight (each exactly once), and a used len is at most what the chain offered. The
/// first violation faults the queue: it throws <see cref="DeviceProtocolViolationException"/>, keeps every chain
/// the device holds in flight (nothing it may still write is released), and every later use throws
/// <see cref="VirtqueueFaultedException"/> until <see cref="ResetState"/> (after a device reset).
/// </para>
/// <para>
/// The caller's token is an integer handed to <see cref="Enqueue"/> or <see cref="EnqueueChain"/> (the virtio-net
/// driver passes the packet the buffer belongs to) and given back by <see cref="TakeUsed"/> or
/// <see cref="ReleaseInFlight"/>; the queue never interprets it. Not thread-safe: one thread drives a queue.
/// </para>
/// </remarks>
public sealed unsafe class SplitVirtqueue
{
    private const ushort EndOfList = 0xFFFF;

    private readonly byte* _desc;
    private readonly byte* _avail;
    private readonly byte* _used;
    private readonly ushort _mask;
    // Driver-private links: for a free descriptor the next free one, for one in a chain the next of the chain.
    private readonly ushort[] _next;
    private readonly ChainState[] _chains;
    private ushort _freeHead;
    private int _freeCount;
    private int _chainsInFlight;
    private ushort _availIdx;     // next avail->idx to publish
    private ushort _publishedIdx; // last avail->idx written to memory
    private ushort _lastUsed;     // next used slot to consume
    private ushort _seenUsedIdx;  // used->idx as last read (validated)
    private DeviceProtocolViolationException? _fault;

    /// <summary>Driver-private state of one chain head (Linux's desc_state plus desc_extra).</summary>
    private struct ChainState
    {
        /// <summary>Descriptors in the chain; 0 = the head is not with the device.</summary>
        public ushort Descriptors;
        /// <summary>The chain's last descriptor.</summary>
        public ushort Tail;
        /// <summary>The most a used len may say: the device-writable bytes offered, or all bytes of a read-only chain.</summary>
        public uint UsedLimit;
        /// <summary>The caller's token.</summary>
        public int Token;
    }

    /// <summary>
    /// Wraps queue memory laid out as <paramref name="layout"/>. The memory must stay mapped for the queue's life
    /// and must be zero (a fresh DMA allocation is).
    /// </summary>
    /// <param name="layout">The queue's layout.</param>
    /// <param name="memory">The CPU's view of the block.</param>
    /// <param name="deviceAddress">The device's view of the block's first byte.</param>
    /// <param name="device">The device the queue belongs to, named in protocol violations.</param>
    /// <param name="name">The queue's name in protocol violations (e.g. "virtqueue 0 (rx)").</param>
    public SplitVirtqueue(SplitQueueLayout layout, nint memory, DmaAddress deviceAddress, PciAddress device = default, string? name = null)
    {
        if (memory == 0) { throw new ArgumentNullException(nameof(memory)); }
        Layout = layout;
        Device = device;
        Name = name ?? "virtqueue";
        // SAFETY: the caller hands over a block of Layout.TotalSize bytes that outlives this object.
        _desc = (byte*)memory + layout.DescriptorOffset;
        _avail = (byte*)memory + layout.AvailOffset;
        _used = (byte*)memory + layout.UsedOffset;
        _mask = (ushort)(layout.Size - 1);
        _next = new ushort[layout.Size];
        _chains = new ChainState[layout.Size];
        DescriptorTableAddress = deviceAddress + (ulong)layout.DescriptorOffset;
        AvailRingAddress = deviceAddress + (ulong)layout.AvailOffset;
        UsedRingAddress = deviceAddress + (ulong)layout.UsedOffset;
        ResetState();
    }

    /// <summary>The layout.</summary>
    public SplitQueueLayout Layout { get; }
    /// <summary>The device named in protocol violations.</summary>
    public PciAddress Device { get; }
    /// <summary>The queue's name in protocol violations.</summary>
    public string Name { get; }
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
    /// <summary>Chains the device holds (made available, not yet taken back).</summary>
    public int ChainsInFlight => _chainsInFlight;
    /// <summary>The next available index the driver will publish.</summary>
    public ushort AvailIndex => _availIdx;
    /// <summary>The next used index the driver will consume.</summary>
    public ushort LastUsedIndex => _lastUsed;
    /// <summary>
    /// What each token leases. With the DMA audit on, every buffer is checked against its token's window before its
    /// descriptor is written, so a violation throws <see cref="DmaAuditViolationException"/> before the driver can
    /// publish or kick; a queue without leases is not audited.
    /// </summary>
    public IVirtqueueLeases? Leases { get; set; }

    /// <summary>True once the device broke the ring protocol; cleared by <see cref="ResetState"/>.</summary>
    public bool IsFaulted => _fault is not null;
    /// <summary>The violation that faulted the queue, or null.</summary>
    public DeviceProtocolViolationException? FaultCause => _fault;

    /// <summary>Entries between two free-running 16-bit indexes, <paramref name="from"/> up to <paramref name="to"/>, across the wrap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Distance(ushort from, ushort to) => unchecked((ushort)(to - from));

    /// <summary>The ring slot of free-running index <paramref name="index"/> in a queue of <paramref name="size"/> (a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Slot(ushort index, ushort size) => index & (size - 1);

    /// <summary>True while the chain headed by descriptor <paramref name="head"/> has been made available and not yet taken back.</summary>
    public bool IsInFlight(int head) => (uint)head < (uint)Size && _chains[head].Descriptors != 0;

    /// <summary>
    /// Forgets every buffer, clears a fault and zeroes the rings: after a device reset, before the queue is handed
    /// to the device again. Tokens still in flight are dropped; call <see cref="ReleaseInFlight"/> first to get them back.
    /// </summary>
    public void ResetState()
    {
        // SAFETY: the three areas lie inside the block given to the constructor.
        new Span<byte>(_desc, VirtqDescriptorLayout.TableSize(Size)).Clear();
        new Span<byte>(_avail, VirtqAvailLayout.AreaSize(Size)).Clear();
        new Span<byte>(_used, VirtqUsedLayout.AreaSize(Size)).Clear();
        for (int i = 0; i < Size; i++) { _next[i] = i + 1 < Size ? (ushort)(i + 1) : EndOfList; }
        Array.Clear(_chains);
        _freeHead = 0;
        _freeCount = Size;
        _chainsInFlight = 0;
        _availIdx = _publishedIdx = _lastUsed = _seenUsedIdx = 0;
        _fault = null;
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
    /// <exception cref="VirtqueueFaultedException">The queue is faulted.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Enqueue(DmaAddress address, uint length, VirtqDescriptorFlags flags, int token = 0)
    {
        if (_fault is not null) { ThrowFaulted(); }
        if (_freeCount == 0) { return -1; }
        if (DmaAudit.Enabled && Leases is not null) { Audit(address, length, token, 0); }
        // SAFETY (no bounds checks): the free list holds ids below Size only, and only the driver writes it.
        ref ushort next0 = ref MemoryMarshal.GetArrayDataReference(_next);
        ushort id = _freeHead;
        ref ushort link = ref Unsafe.Add(ref next0, id);
        _freeHead = link;
        link = EndOfList;
        _freeCount--;
        flags &= ~VirtqDescriptorFlags.Next;
        WriteDescriptor(id, address, length, flags, 0);
        // One buffer: writable, it bounds len; read-only, its length does (see UsedLimit).
        Track(id, 1, id, length, token);
        MakeAvailable(id);
        return id;
    }

    /// <summary>
    /// Places a chain of buffers (device-readable ones first, §2.7.4.2) in the next available slot. Returns the head
    /// descriptor id, or -1 when fewer than <c>buffers.Length</c> descriptors are free.
    /// </summary>
    /// <param name="buffers">The chain's buffers, in order.</param>
    /// <param name="token">The caller's token, returned by <see cref="TakeUsed"/> when the device is done with the chain.</param>
    /// <exception cref="VirtqueueFaultedException">The queue is faulted.</exception>
    public int EnqueueChain(ReadOnlySpan<VirtqBuffer> buffers, int token = 0)
    {
        if (_fault is not null) { ThrowFaulted(); }
        if (buffers.IsEmpty) { throw new ArgumentException("a chain has at least one buffer", nameof(buffers)); }
        if (_freeCount < buffers.Length) { return -1; }
        if (DmaAudit.Enabled && Leases is not null)
        {
            for (int i = 0; i < buffers.Length; i++) { Audit(buffers[i].Address, buffers[i].Length, token, i); }
        }
        ushort head = _freeHead;
        ushort id = head;
        ulong writable = 0, total = 0;
        for (int i = 0; i < buffers.Length; i++)
        {
            bool last = i == buffers.Length - 1;
            // The free list's private link becomes the chain's; the last descriptor hands the rest of the list on.
            ushort next = _next[id];
            var flags = buffers[i].DeviceWritable ? VirtqDescriptorFlags.Write : VirtqDescriptorFlags.None;
            if (!last) { flags |= VirtqDescriptorFlags.Next; }
            WriteDescriptor(id, buffers[i].Address, buffers[i].Length, flags, last ? (ushort)0 : next);
            total += buffers[i].Length;
            if (buffers[i].DeviceWritable) { writable += buffers[i].Length; }
            if (last)
            {
                _freeHead = next;
                _next[id] = EndOfList;
            }
            else
            {
                id = next;
            }
        }
        _freeCount -= buffers.Length;
        Track(head, (ushort)buffers.Length, id, UsedLimit(writable, total), token);
        MakeAvailable(head);
        return head;
    }

    /// <summary>
    /// The DMA audit of one buffer, before anything of its chain is written: nothing reaches the ring, so nothing can
    /// be published or kicked.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Audit(DmaAddress address, uint length, int token, int index)
    {
        var lease = Leases!.LeaseOf(token);
        if (DmaAudit.Verify(address, length, lease, out var buffer) is { } problem)
        {
            throw new DmaAuditViolationException(Device, Name, $"buffer {index} of the chain with token {token}", address, length, buffer, problem);
        }
    }

    /// <summary>
    /// §2.7.8: len is "the number of bytes written into the device writable portion of the buffer", so it is bounded
    /// by the writable bytes offered. A chain with none (a transmitted packet) should see 0; some devices report the
    /// bytes read instead, so such a chain's bound is its whole length.
    /// </summary>
    private static uint UsedLimit(ulong writable, ulong total) => (uint)Math.Min(writable != 0 ? writable : total, uint.MaxValue);

    /// <summary>
    /// Writes <c>struct virtq_desc</c> (§2.7.5) whole, from the driver's state: the one place a buffer's
    /// <see cref="DmaAddress"/> becomes the ring's le64. All four fields are written, so whatever the device left in
    /// the entry since it last held it is overwritten before the device sees it again.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteDescriptor(ushort id, DmaAddress address, uint length, VirtqDescriptorFlags flags, ushort next)
    {
        // SAFETY: id < Size, so the 16 bytes lie inside the descriptor table.
        byte* d = _desc + VirtqDescriptorLayout.Size * id;
        *(ulong*)(d + VirtqDescriptorLayout.Address) = address.Value;
        *(uint*)(d + VirtqDescriptorLayout.Length) = length;
        *(ushort*)(d + VirtqDescriptorLayout.Flags) = (ushort)flags;
        *(ushort*)(d + VirtqDescriptorLayout.Next) = next;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Track(ushort head, ushort descriptors, ushort tail, uint usedLimit, int token)
    {
        // SAFETY (no bounds check): head came off the free list, which holds ids below Size only.
        ref var chain = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_chains), head);
        chain.Descriptors = descriptors;
        chain.Tail = tail;
        chain.UsedLimit = usedLimit;
        chain.Token = token;
        _chainsInFlight++;
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
    /// by leaving VIRTQ_USED_F_NO_NOTIFY clear in used->flags (§2.7.10). A faulted queue wants none.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool DeviceWantsNotification()
    {
        if (_fault is not null) { return false; }
        // Full barrier: the avail->idx store must be visible before the used->flags load, or the device could
        // re-enable notifications after we looked and never see the new buffers (§2.7.13 step 4, virtio_mb).
        Interlocked.MemoryBarrier();
        return (Volatile.Read(ref *(ushort*)(_used + VirtqUsedLayout.Flags)) & (ushort)VirtqUsedFlags.NoNotify) == 0;
    }

    /// <summary>Used entries the device has returned that the driver has not consumed yet.</summary>
    /// <exception cref="DeviceProtocolViolationException">used->idx ran ahead by more than the chains in flight, or moved back; the queue is now faulted.</exception>
    /// <exception cref="VirtqueueFaultedException">The queue is faulted.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int UsedCount()
    {
        if (_fault is not null) { ThrowFaulted(); }
        // Acquire: the used entries (and the data the device wrote into the buffers) are read only after the index.
        ushort idx = Volatile.Read(ref *(ushort*)(_used + VirtqUsedLayout.Index));
        int ready = Distance(_lastUsed, idx);
        // §2.7.8: each used entry returns one chain the device held, so used->idx runs ahead of what the driver
        // consumed by at most the chains in flight (never more than the queue size), and it never moves back.
        if (ready > _chainsInFlight || ready < Distance(_lastUsed, _seenUsedIdx)) { ThrowBadUsedIndex(idx, ready); }
        _seenUsedIdx = idx;
        return ready;
    }

    /// <summary>
    /// Consumes the next used entry: returns the token the chain was enqueued with and the bytes the device wrote,
    /// and puts the chain's descriptors back on the free list. Checks id and len first (§2.7.8).
    /// </summary>
    /// <exception cref="DeviceProtocolViolationException">The device returned an id outside the ring or not in flight, or a len past what the chain offered; the queue is now faulted and the chain stays with the device.</exception>
    /// <exception cref="VirtqueueFaultedException">The queue is faulted.</exception>
    /// <exception cref="InvalidOperationException">No used entry is waiting.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int TakeUsed(out uint length)
    {
        if (_fault is not null) { ThrowFaulted(); }
        if (_lastUsed == _seenUsedIdx && UsedCount() == 0) { ThrowNothingUsed(); }
        // §2.7.8 struct virtq_used_elem: le32 id, le32 len; each read once, so the checked value is the used one.
        byte* e = _used + VirtqUsedLayout.ElementOffset(_lastUsed & _mask);
        uint id = Volatile.Read(ref *(uint*)(e + VirtqUsedLayout.ElementId));
        uint len = Volatile.Read(ref *(uint*)(e + VirtqUsedLayout.ElementLength));
        if (id > _mask) { ThrowBadUsedElement(id, len, $"id {id} lies outside the queue of {Size} descriptors"); }
        // SAFETY (no bounds check): id <= _mask < Size, the length of both arrays.
        ref var chain = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_chains), (int)id);
        if (chain.Descriptors == 0) { ThrowBadUsedElement(id, len, $"id {id} is not the head of a chain in flight (never made available, or returned already)"); }
        if (len > chain.UsedLimit) { ThrowBadUsedElement(id, len, $"len {len} exceeds the {chain.UsedLimit} bytes chain {id} offered"); }
        _lastUsed++;
        // The chain's private links still hold: its tail joins it in front of the free list.
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_next), chain.Tail) = _freeHead;
        _freeHead = (ushort)id;
        _freeCount += chain.Descriptors;
        _chainsInFlight--;
        int token = chain.Token;
        chain = default;
        length = len;
        return token;
    }

    /// <summary>
    /// Faults the queue for a violation its owner found in what the device wrote into a buffer (e.g. a virtio-net
    /// header's num_buffers), and returns the exception for the owner to throw.
    /// </summary>
    public DeviceProtocolViolationException Violation(string where, string seen) =>
        _fault ??= new DeviceProtocolViolationException(Device, $"{Name} {where}", seen);

    /// <summary>
    /// Gives the token of every chain still in flight to <paramref name="release"/> and puts their descriptors back
    /// on the free list. Only once the device uses no more buffers: after a reset (§4.1.4.3.2), before
    /// <see cref="ResetState"/>. Allowed on a faulted queue (the reset is what makes releasing safe).
    /// </summary>
    public void ReleaseInFlight(Action<int> release)
    {
        ArgumentNullException.ThrowIfNull(release);
        for (int head = 0; head < Size; head++)
        {
            ref var chain = ref _chains[head];
            if (chain.Descriptors == 0) { continue; }
            _next[chain.Tail] = _freeHead;
            _freeHead = (ushort)head;
            _freeCount += chain.Descriptors;
            _chainsInFlight--;
            int token = chain.Token;
            chain = default;
            release(token);
        }
    }

    [DoesNotReturn]
    private void ThrowBadUsedIndex(ushort idx, int ready) =>
        throw Violation("used ring idx (§2.7.8)",
            $"used idx {idx} with the last consumed entry at {_lastUsed} and {Distance(_lastUsed, _seenUsedIdx)} seen before: " +
            $"{ready} entries ready, but {_chainsInFlight} chain(s) are in flight in a queue of {Size}");

    [DoesNotReturn]
    private void ThrowBadUsedElement(uint id, uint len, string seen) =>
        throw Violation($"used ring entry {_lastUsed & _mask} (used idx {_lastUsed}, id {id}, len {len}) (§2.7.8)", seen);

    [DoesNotReturn]
    private void ThrowFaulted() => throw new VirtqueueFaultedException(Device, Name, _fault!);

    [DoesNotReturn]
    private static void ThrowNothingUsed() =>
        throw new InvalidOperationException("TakeUsed with no used entry waiting: check UsedCount first");
}
