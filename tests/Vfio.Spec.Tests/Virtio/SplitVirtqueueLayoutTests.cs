using Vfio.Spec.Virtio;

namespace Vfio.Spec.Tests.Virtio;

/// <summary>virtio 1.2 2.7 "Split Virtqueues".</summary>
public sealed class SplitVirtqueueLayoutTests
{
    [Fact]
    public void PartAlignmentsAndSizes()
    {
        // 2.7, table "Virtqueue Part / Alignment / Size": Descriptor Table 16, 16*(Queue Size); Available Ring 2,
        // 6 + 2*(Queue Size); Used Ring 4, 6 + 8*(Queue Size).
        Assert.Equal(16, VirtqDescriptorLayout.Alignment);
        Assert.Equal(2, VirtqAvailLayout.Alignment);
        Assert.Equal(4, VirtqUsedLayout.Alignment);
        foreach (int n in new[] { 1, 2, 256, 1024, 32768 })
        {
            Assert.Equal(16 * n, VirtqDescriptorLayout.TableSize(n));
            Assert.Equal(6 + 2 * n, VirtqAvailLayout.AreaSize(n));
            Assert.Equal(6 + 8 * n, VirtqUsedLayout.AreaSize(n));
        }
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(256, true)]
    [InlineData(32768, true)]
    [InlineData(0, false)]
    [InlineData(3, false)]
    [InlineData(65536, false)]
    [InlineData(-2, false)]
    public void QueueSizeIsAPowerOfTwoUpTo32768(int size, bool valid)
    {
        // 2.7: "Queue Size ... is always a power of 2. The maximum Queue Size value is 32768."
        Assert.Equal(32768, SplitVirtq.MaxQueueSize);
        Assert.Equal(valid, SplitVirtq.IsValidQueueSize(size));
    }

    [Fact]
    public void DescriptorIs16BytesAddrLenFlagsNext()
    {
        // 2.7.5 "The Virtqueue Descriptor Table": struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }.
        Assert.Equal(16, VirtqDescriptorLayout.Size);
        Assert.Equal((0, 8, 12, 14), (VirtqDescriptorLayout.Address, VirtqDescriptorLayout.Length, VirtqDescriptorLayout.Flags, VirtqDescriptorLayout.Next));
        Assert.Equal(VirtqDescriptorLayout.Size, VirtqDescriptorLayout.Next + sizeof(ushort));
    }

    [Fact]
    public void DescriptorFlags()
    {
        // 2.7.5: VIRTQ_DESC_F_NEXT 1, VIRTQ_DESC_F_WRITE 2, VIRTQ_DESC_F_INDIRECT 4; flags is le16.
        Assert.Equal(1, (int)VirtqDescriptorFlags.Next);
        Assert.Equal(2, (int)VirtqDescriptorFlags.Write);
        Assert.Equal(4, (int)VirtqDescriptorFlags.Indirect);
        Assert.Equal(2, System.Runtime.CompilerServices.Unsafe.SizeOf<VirtqDescriptorFlags>());
    }

    [Fact]
    public void AvailableRingLayout()
    {
        // 2.7.6 "The Virtqueue Available Ring": struct virtq_avail { le16 flags; le16 idx; le16 ring[Queue Size];
        // le16 used_event; /* Only if VIRTIO_F_EVENT_IDX */ }.
        Assert.Equal((0, 2, 4, 2), (VirtqAvailLayout.Flags, VirtqAvailLayout.Index, VirtqAvailLayout.Ring, VirtqAvailLayout.EntrySize));
        Assert.Equal(4, VirtqAvailLayout.EntryOffset(0));
        Assert.Equal(4 + 2 * 255, VirtqAvailLayout.EntryOffset(255));
        Assert.Equal(4 + 2 * 256, VirtqAvailLayout.UsedEvent(256));       // right after ring[255]
        Assert.Equal(VirtqAvailLayout.AreaSize(256), VirtqAvailLayout.UsedEvent(256) + 2);
        // 2.7.7 "Used Buffer Notification Suppression": #define VIRTQ_AVAIL_F_NO_INTERRUPT 1.
        Assert.Equal(1, (int)VirtqAvailFlags.NoInterrupt);
    }

    [Fact]
    public void UsedRingLayout()
    {
        // 2.7.8 "The Virtqueue Used Ring": struct virtq_used { le16 flags; le16 idx; struct virtq_used_elem
        // ring[Queue Size]; le16 avail_event; /* Only if VIRTIO_F_EVENT_IDX */ }; struct virtq_used_elem { le32 id; le32 len; }.
        Assert.Equal((0, 2, 4, 8), (VirtqUsedLayout.Flags, VirtqUsedLayout.Index, VirtqUsedLayout.Ring, VirtqUsedLayout.ElementSize));
        Assert.Equal((0, 4), (VirtqUsedLayout.ElementId, VirtqUsedLayout.ElementLength));
        Assert.Equal(4, VirtqUsedLayout.ElementOffset(0));
        Assert.Equal(4 + 8 * 255, VirtqUsedLayout.ElementOffset(255));
        Assert.Equal(4 + 8 * 256, VirtqUsedLayout.AvailEvent(256));        // right after ring[255]
        Assert.Equal(VirtqUsedLayout.AreaSize(256), VirtqUsedLayout.AvailEvent(256) + 2);
        // 2.7.10 "Available Buffer Notification Suppression": #define VIRTQ_USED_F_NO_NOTIFY 1.
        Assert.Equal(1, (int)VirtqUsedFlags.NoNotify);
    }
}
