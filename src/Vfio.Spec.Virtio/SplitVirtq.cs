using System.Numerics;

namespace Vfio.Spec.Virtio;

/// <summary>
/// Sizes of a split virtqueue (virtio 1.2 §2.7 "Split Virtqueues"): three parts, each physically contiguous in
/// the driver's memory with its own alignment (the table "Virtqueue Part / Alignment / Size" of §2.7).
/// </summary>
public static class SplitVirtq
{
    /// <summary>Largest queue size: a split virtqueue has a power-of-two size of at most 32768 entries.</summary>
    public const int MaxQueueSize = 32768;

    /// <summary>True when <paramref name="size"/> is a size a split virtqueue may have: a power of two from 1 to 32768.</summary>
    public static bool IsValidQueueSize(int size) => size is >= 1 and <= MaxQueueSize && BitOperations.IsPow2(size);
}

/// <summary>Descriptor flags of <c>struct virtq_desc</c> (virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table").</summary>
[Flags]
public enum VirtqDescriptorFlags : ushort
{
    /// <summary>None: a device-readable buffer that ends its chain.</summary>
    None = 0,
    /// <summary>VIRTQ_DESC_F_NEXT: the chain continues at <c>next</c>.</summary>
    Next = 1,
    /// <summary>VIRTQ_DESC_F_WRITE: the device writes this buffer (otherwise it reads it).</summary>
    Write = 2,
    /// <summary>VIRTQ_DESC_F_INDIRECT: the buffer holds a table of descriptors (§2.7.5.3).</summary>
    Indirect = 4,
}

/// <summary>
/// <c>struct virtq_desc</c> (virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table"): le64 addr, le32 len, le16 flags,
/// le16 next; the table holds queue-size of them and is 16-byte aligned.
/// </summary>
public static class VirtqDescriptorLayout
{
    /// <summary>Bytes per descriptor.</summary>
    public const int Size = 16;
    /// <summary>Alignment of the descriptor table.</summary>
    public const int Alignment = 16;
    /// <summary>addr (le64): device address of the buffer.</summary>
    public const int Address = 0;
    /// <summary>len (le32): the buffer's length in bytes.</summary>
    public const int Length = 8;
    /// <summary>flags (le16): <see cref="VirtqDescriptorFlags"/>.</summary>
    public const int Flags = 12;
    /// <summary>next (le16): the next descriptor of the chain when flags has NEXT.</summary>
    public const int Next = 14;

    /// <summary>Bytes of the descriptor table of a queue of <paramref name="queueSize"/> entries.</summary>
    public static int TableSize(int queueSize) => Size * queueSize;
}

/// <summary>Flags of the available ring (virtio 1.2 §2.7.6, §2.7.7 "Used Buffer Notification Suppression").</summary>
[Flags]
public enum VirtqAvailFlags : ushort
{
    /// <summary>None: the device interrupts when it uses buffers.</summary>
    None = 0,
    /// <summary>VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks for no used buffer notifications (ignored with EVENT_IDX).</summary>
    NoInterrupt = 1,
}

/// <summary>
/// <c>struct virtq_avail</c>, the driver area (virtio 1.2 §2.7.6 "The Virtqueue Available Ring"): le16 flags,
/// le16 idx, le16 ring[queue size], then le16 used_event (only meaningful with VIRTIO_F_EVENT_IDX); 2-byte aligned.
/// </summary>
public static class VirtqAvailLayout
{
    /// <summary>Alignment of the driver area.</summary>
    public const int Alignment = 2;
    /// <summary>flags (le16): <see cref="VirtqAvailFlags"/>.</summary>
    public const int Flags = 0;
    /// <summary>idx (le16): where the driver puts the next entry, free-running (mod 2^16).</summary>
    public const int Index = 2;
    /// <summary>ring[]: the first entry.</summary>
    public const int Ring = 4;
    /// <summary>Bytes per ring entry: the le16 head of a descriptor chain.</summary>
    public const int EntrySize = 2;

    /// <summary>Offset of ring entry <paramref name="slot"/> (0 to queue size - 1).</summary>
    public static int EntryOffset(int slot) => Ring + EntrySize * slot;

    /// <summary>Offset of used_event (§2.7.7, §2.7.10) in a queue of <paramref name="queueSize"/>: just after the ring.</summary>
    public static int UsedEvent(int queueSize) => Ring + EntrySize * queueSize;

    /// <summary>Bytes of the driver area of a queue of <paramref name="queueSize"/> entries: 6 + 2 × size.</summary>
    public static int AreaSize(int queueSize) => UsedEvent(queueSize) + 2;
}

/// <summary>Flags of the used ring (virtio 1.2 §2.7.8, §2.7.10 "Available Buffer Notification Suppression").</summary>
[Flags]
public enum VirtqUsedFlags : ushort
{
    /// <summary>None: the device wants available buffer notifications.</summary>
    None = 0,
    /// <summary>VIRTQ_USED_F_NO_NOTIFY: the device asks for no available buffer notifications (ignored with EVENT_IDX).</summary>
    NoNotify = 1,
}

/// <summary>
/// <c>struct virtq_used</c>, the device area (virtio 1.2 §2.7.8 "The Virtqueue Used Ring"): le16 flags, le16 idx,
/// <c>struct virtq_used_elem</c> ring[queue size] (le32 id, le32 len), then le16 avail_event (only meaningful with
/// VIRTIO_F_EVENT_IDX); 4-byte aligned.
/// </summary>
public static class VirtqUsedLayout
{
    /// <summary>Alignment of the device area.</summary>
    public const int Alignment = 4;
    /// <summary>flags (le16): <see cref="VirtqUsedFlags"/>.</summary>
    public const int Flags = 0;
    /// <summary>idx (le16): where the device puts the next element, free-running (mod 2^16).</summary>
    public const int Index = 2;
    /// <summary>ring[]: the first element.</summary>
    public const int Ring = 4;
    /// <summary>Bytes per element (struct virtq_used_elem).</summary>
    public const int ElementSize = 8;
    /// <summary>id (le32) within an element: the head of the descriptor chain used.</summary>
    public const int ElementId = 0;
    /// <summary>len (le32) within an element: bytes the device wrote into the chain's device-writable buffers.</summary>
    public const int ElementLength = 4;

    /// <summary>Offset of element <paramref name="slot"/> (0 to queue size - 1).</summary>
    public static int ElementOffset(int slot) => Ring + ElementSize * slot;

    /// <summary>Offset of avail_event (§2.7.10) in a queue of <paramref name="queueSize"/>: just after the ring.</summary>
    public static int AvailEvent(int queueSize) => Ring + ElementSize * queueSize;

    /// <summary>Bytes of the device area of a queue of <paramref name="queueSize"/> entries: 6 + 8 × size.</summary>
    public static int AreaSize(int queueSize) => AvailEvent(queueSize) + 2;
}
