using System.Runtime.InteropServices;
using CsCheck;
using Vfio.Dma;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Virtio;

namespace Vfio.VirtioNet.Tests;

/// <summary>The split ring from the driver's side, with the test playing the device on the same memory.</summary>
public sealed unsafe class SplitVirtqueueTests : IDisposable
{
    private nint _memory;

    private SplitVirtqueue Create(int size, out SplitQueueLayout layout)
    {
        layout = SplitQueueLayout.For(size);
        _memory = (nint)NativeMemory.AlignedAlloc((nuint)layout.TotalSize, 4096);
        NativeMemory.Clear((void*)_memory, (nuint)layout.TotalSize);
        return new SplitVirtqueue(layout, _memory, new DmaAddress(0x1_0000_0000));
    }

    public void Dispose()
    {
        if (_memory != 0) { NativeMemory.AlignedFree((void*)_memory); }
    }

    private ushort AvailIdx(SplitQueueLayout l) => *(ushort*)(_memory + l.AvailOffset + 2);
    private ushort AvailRing(SplitQueueLayout l, int slot) => *(ushort*)(_memory + l.AvailOffset + 4 + 2 * slot);
    private (ulong Addr, uint Len, ushort Flags, ushort Next) Desc(SplitQueueLayout l, int id)
    {
        byte* d = (byte*)_memory + l.DescriptorOffset + 16 * id;
        return (*(ulong*)d, *(uint*)(d + 8), *(ushort*)(d + 12), *(ushort*)(d + 14));
    }

    private ushort _deviceUsed;
    private void DeviceUses(SplitQueueLayout l, ushort id, uint len)
    {
        byte* e = (byte*)_memory + l.UsedOffset + 4 + 8 * (_deviceUsed & (l.Size - 1));
        *(uint*)e = id;
        *(uint*)(e + 4) = len;
        _deviceUsed++;
        *(ushort*)(_memory + l.UsedOffset + 2) = _deviceUsed;
    }

    [Theory]
    [InlineData(1, 0, 16, 64, 128)]
    [InlineData(256, 0, 4096, 4672, 6784)]
    [InlineData(32768, 0, 524288, 589888, 852096)]
    public void LayoutFollowsTheSpecAlignments(int size, int desc, int avail, int used, int total)
    {
        var l = SplitQueueLayout.For(size);
        Assert.Equal((desc, avail, used, total), (l.DescriptorOffset, l.AvailOffset, l.UsedOffset, l.TotalSize));
        Assert.Equal(0, l.DescriptorOffset % 16);
        Assert.Equal(0, l.AvailOffset % 2);
        Assert.Equal(0, l.UsedOffset % 4);
        Assert.True(l.UsedOffset >= l.AvailOffset + 6 + 2 * size);
        Assert.True(l.TotalSize >= l.UsedOffset + 6 + 8 * size);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(65536)]
    public void SizeMustBeAPowerOfTwoUpTo32768(int size) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => SplitQueueLayout.For(size));

    [Fact]
    public void IndexDistanceWrapsAt65536()
    {
        Assert.Equal(3, SplitVirtqueue.Distance(65534, 1));
        Assert.Equal(0, SplitVirtqueue.Distance(7, 7));
        Assert.Equal(5, SplitVirtqueue.Slot(unchecked((ushort)(65535 + 6)), 8));
        Gen.Select(Gen.UShort, Gen.UShort[0, 32768]).Sample((from, n) =>
            SplitVirtqueue.Distance(from, unchecked((ushort)(from + n))) == n);
    }

    [Fact]
    public void EnqueueWritesTheDescriptorAndPublishMakesItVisible()
    {
        var q = Create(8, out var l);
        Assert.Equal(8, q.FreeDescriptors);
        Assert.Equal(new DmaAddress(0x1_0000_0000 + (ulong)l.AvailOffset), q.AvailRingAddress);
        int id = q.Enqueue(new DmaAddress(0xABCD_0000), 1526, VirtqDescriptorFlags.Write);
        Assert.Equal(0, AvailIdx(l));                     // not yet published
        Assert.True(q.Publish());
        Assert.False(q.Publish());                         // nothing new
        Assert.Equal(1, AvailIdx(l));
        Assert.Equal(id, AvailRing(l, 0));
        var d = Desc(l, id);
        Assert.Equal((0xABCD_0000UL, 1526u, (ushort)VirtqDescriptorFlags.Write), (d.Addr, d.Len, d.Flags));
        Assert.Equal(7, q.FreeDescriptors);
    }

    [Fact]
    public void RunsOutOfDescriptorsAndGetsThemBackFromTheUsedRing()
    {
        var q = Create(4, out var l);
        var ids = new List<int>();
        for (int i = 0; i < 4; i++) { ids.Add(q.Enqueue(new DmaAddress((ulong)i * 4096), 64, VirtqDescriptorFlags.None, token: 100 + i)); }
        Assert.Equal(-1, q.Enqueue(default, 64, VirtqDescriptorFlags.None));
        Assert.Equal(4, ids.Distinct().Count());
        q.Publish();
        Assert.Equal(0, q.UsedCount());
        DeviceUses(l, (ushort)ids[2], 10);
        DeviceUses(l, (ushort)ids[0], 20);
        Assert.Equal(2, q.UsedCount());
        Assert.Equal(102, q.TakeUsed(out uint len));      // the token the buffer was enqueued with
        Assert.Equal(10u, len);
        Assert.Equal(100, q.TakeUsed(out len));
        Assert.Equal(20u, len);
        Assert.Equal(2, q.FreeDescriptors);
        Assert.Equal(0, q.UsedCount());
    }

    [Fact]
    public void ChainsLinkDescriptorsReadableFirstAndFreeAsAWhole()
    {
        var q = Create(8, out var l);
        int head = q.EnqueueChain([
            new VirtqBuffer(new DmaAddress(0x1000), 4, DeviceWritable: false),
            new VirtqBuffer(new DmaAddress(0x2000), 8, DeviceWritable: false),
            new VirtqBuffer(new DmaAddress(0x3000), 1, DeviceWritable: true),
        ]);
        Assert.Equal(5, q.FreeDescriptors);
        var d0 = Desc(l, head);
        Assert.Equal((ushort)VirtqDescriptorFlags.Next, d0.Flags);
        var d1 = Desc(l, d0.Next);
        Assert.Equal((0x2000UL, (ushort)VirtqDescriptorFlags.Next), (d1.Addr, d1.Flags));
        var d2 = Desc(l, d1.Next);
        Assert.Equal((0x3000UL, 1u, (ushort)VirtqDescriptorFlags.Write), (d2.Addr, d2.Len, d2.Flags));
        Assert.Equal(-1, q.EnqueueChain(new VirtqBuffer[6]));
        q.Publish();
        DeviceUses(l, (ushort)head, 1);
        Assert.Equal(1, q.UsedCount());
        q.TakeUsed(out _);
        Assert.Equal(8, q.FreeDescriptors);
    }

    [Fact]
    public void IndexesKeepWorkingAcrossThe16BitWrap()
    {
        // 70,000 buffers through a 4-entry queue: both free-running indexes wrap past 65535.
        var q = Create(4, out var l);
        for (int i = 0; i < 70_000; i++)
        {
            int id = q.Enqueue(new DmaAddress((ulong)i), (uint)(i & 0xFFF), VirtqDescriptorFlags.Write, token: i);
            Assert.True(id >= 0);
            q.Publish();
            Assert.Equal(unchecked((ushort)(i + 1)), AvailIdx(l));
            Assert.Equal(id, AvailRing(l, i & 3));
            DeviceUses(l, (ushort)id, (uint)(i & 0xFFF));
            Assert.Equal(1, q.UsedCount());
            Assert.Equal(i, q.TakeUsed(out uint len));
            Assert.Equal((uint)(i & 0xFFF), len);
        }
        Assert.Equal(unchecked((ushort)70_000), q.AvailIndex);
        Assert.Equal(unchecked((ushort)70_000), q.LastUsedIndex);
    }

    [Fact]
    public void ABogusUsedIdIsAProtocolError()
    {
        var q = Create(4, out var l);
        q.Enqueue(default, 1, VirtqDescriptorFlags.None);
        q.Publish();
        DeviceUses(l, 99, 0);
        Assert.Contains("outside the queue", Assert.Throws<DeviceProtocolViolationException>(() => q.TakeUsed(out _)).Seen);
        Assert.True(q.IsFaulted);
        Assert.Throws<VirtqueueFaultedException>(() => q.UsedCount());
    }

    [Fact]
    public void NotificationAndInterruptSuppressionFlags()
    {
        var q = Create(4, out var l);
        Assert.True(q.DeviceWantsNotification());
        *(ushort*)(_memory + l.UsedOffset) = (ushort)VirtqUsedFlags.NoNotify;
        Assert.False(q.DeviceWantsNotification());
        q.SetInterruptSuppression(true);
        Assert.Equal((ushort)VirtqAvailFlags.NoInterrupt, *(ushort*)(_memory + l.AvailOffset));
        q.SetInterruptSuppression(false);
        Assert.Equal(0, *(ushort*)(_memory + l.AvailOffset));
    }

    [Fact]
    public void ResetStateForgetsEverything()
    {
        var q = Create(4, out var l);
        int id = q.Enqueue(new DmaAddress(1), 1, VirtqDescriptorFlags.None);
        q.Publish();
        q.ResetState();
        Assert.False(q.IsInFlight(id));
        Assert.Equal(4, q.FreeDescriptors);
        Assert.Equal(0, AvailIdx(l));
        Assert.Equal(0, q.AvailIndex);
    }

    [Fact]
    public void RandomInterleavingsNeverLoseOrDuplicateDescriptors()
    {
        Gen.Int[0, 2].Array[1, 400].Sample(ops =>
        {
            var layout = SplitQueueLayout.For(8);
            var mem = (nint)NativeMemory.AlignedAlloc((nuint)layout.TotalSize, 64);
            try
            {
                NativeMemory.Clear((void*)mem, (nuint)layout.TotalSize);
                var q = new SplitVirtqueue(layout, mem, new DmaAddress(0));
                var inFlight = new Queue<int>();
                ushort used = 0;
                foreach (var op in ops)
                {
                    if (op < 2)
                    {
                        int id = q.Enqueue(new DmaAddress(1), 1, VirtqDescriptorFlags.None);
                        if (id >= 0) { if (inFlight.Contains(id)) { return false; } inFlight.Enqueue(id); }
                        else if (inFlight.Count != 8) { return false; }
                        q.Publish();
                    }
                    else if (inFlight.Count > 0)
                    {
                        byte* e = (byte*)mem + layout.UsedOffset + 4 + 8 * (used & 7);
                        *(uint*)e = (uint)inFlight.Dequeue();
                        used++;
                        *(ushort*)(mem + layout.UsedOffset + 2) = used;
                        q.TakeUsed(out _);
                    }
                    if (q.FreeDescriptors + inFlight.Count != 8) { return false; }
                }
                return true;
            }
            finally { NativeMemory.AlignedFree((void*)mem); }
        });
    }

    [Fact]
    public void TheTokenComesBackWithItsBufferWhateverOrderTheDeviceUsesThem()
    {
        // The token is the caller's: any int, unrelated to the descriptor id, returned with the used buffer.
        var q = Create(8, out var l);
        int a = q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write, token: -7);
        int b = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x2000), 4, false), new VirtqBuffer(new DmaAddress(0x3000), 1, true)], token: int.MaxValue);
        int c = q.Enqueue(new DmaAddress(0x4000), 64, VirtqDescriptorFlags.Write, token: 0);
        q.Publish();
        DeviceUses(l, (ushort)b, 1);
        DeviceUses(l, (ushort)c, 2);
        DeviceUses(l, (ushort)a, 3);
        Assert.Equal(int.MaxValue, q.TakeUsed(out uint len));
        Assert.Equal(1u, len);
        Assert.Equal(0, q.TakeUsed(out _));
        Assert.Equal(-7, q.TakeUsed(out _));
        Assert.Equal(8, q.FreeDescriptors);
    }

    [Fact]
    public void InFlightStateFollowsEachChainFromEnqueueToTakeUsed()
    {
        var q = Create(8, out var l);
        int single = q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.None, token: 1);
        int chain = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x2000), 4, false), new VirtqBuffer(new DmaAddress(0x3000), 1, true)], token: 2);
        Assert.True(q.IsInFlight(single));
        Assert.True(q.IsInFlight(chain));
        Assert.Equal(6, Enumerable.Range(0, 8).Count(i => !q.IsInFlight(i)));   // heads only: the chain's second descriptor is not one
        Assert.False(q.IsInFlight(-1));
        Assert.False(q.IsInFlight(8));
        q.Publish();
        DeviceUses(l, (ushort)chain, 1);
        Assert.Equal(2, q.TakeUsed(out _));
        Assert.False(q.IsInFlight(chain));
        Assert.True(q.IsInFlight(single));
        Assert.Equal(7, q.FreeDescriptors);
    }

    [Fact]
    public void AUsedIdTheDriverDidNotMakeAvailableIsAProtocolError()
    {
        // A device returning a head twice (or a free descriptor) must not put descriptors on the free list twice.
        var q = Create(4, out var l);
        int id = q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.None, token: 5);
        q.Enqueue(new DmaAddress(0x2000), 64, VirtqDescriptorFlags.None, token: 6);
        q.Publish();
        DeviceUses(l, (ushort)id, 0);
        DeviceUses(l, (ushort)id, 0);
        Assert.Equal(5, q.TakeUsed(out _));
        Assert.Contains("not the head of a chain in flight", Assert.Throws<DeviceProtocolViolationException>(() => q.TakeUsed(out _)).Seen);
        Assert.Equal(3, q.FreeDescriptors);
        Assert.Equal(1, q.ChainsInFlight);   // the other chain stays with the device
    }

    [Fact]
    public void MoreUsedEntriesThanChainsInFlightIsAProtocolError()
    {
        // Two used entries for the one chain the device holds: used idx itself gives the duplicate away.
        var q = Create(4, out var l);
        int id = q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.None, token: 5);
        q.Publish();
        DeviceUses(l, (ushort)id, 0);
        DeviceUses(l, (ushort)id, 0);
        var e = Assert.Throws<DeviceProtocolViolationException>(() => q.UsedCount());
        Assert.Contains("used ring idx", e.Where);
        Assert.True(q.IsInFlight(id));
        Assert.Same(e, Assert.Throws<VirtqueueFaultedException>(() => q.TakeUsed(out _)).InnerException);
        Assert.Throws<VirtqueueFaultedException>(() => q.Enqueue(default, 1, VirtqDescriptorFlags.None));
    }

    [Fact]
    public void InFlightBookkeepingIsNotInTheRingsTheDeviceCanWrite()
    {
        // A device scribbling over the descriptor flags of a chain it holds cannot change how many descriptors the
        // driver frees: the chain's length comes from the driver's own state.
        var q = Create(8, out var l);
        int head = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x2000), 4, false), new VirtqBuffer(new DmaAddress(0x3000), 1, true)], token: 9);
        q.Publish();
        byte* d = (byte*)_memory + l.DescriptorOffset + VirtqDescriptorLayout.Size * head;
        *(ushort*)(d + VirtqDescriptorLayout.Flags) = 0;   // NEXT cleared behind the driver's back
        DeviceUses(l, (ushort)head, 1);
        Assert.Equal(9, q.TakeUsed(out _));
        Assert.Equal(8, q.FreeDescriptors);
        var ids = new HashSet<int>();
        for (int i = 0; i < 8; i++) { Assert.True(ids.Add(q.Enqueue(new DmaAddress(0), 1, VirtqDescriptorFlags.None))); }
        Assert.Equal(-1, q.Enqueue(new DmaAddress(0), 1, VirtqDescriptorFlags.None));
    }

    [Fact]
    public void ReleaseInFlightHandsBackEveryTokenTheDeviceStillHeld()
    {
        var q = Create(8, out var l);
        q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write, token: 10);
        int used = q.Enqueue(new DmaAddress(0x2000), 64, VirtqDescriptorFlags.Write, token: 11);
        q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x3000), 4, false), new VirtqBuffer(new DmaAddress(0x4000), 1, true)], token: 12);
        q.Publish();
        DeviceUses(l, (ushort)used, 64);
        Assert.Equal(11, q.TakeUsed(out _));
        var released = new List<int>();
        q.ReleaseInFlight(released.Add);
        Assert.Equal([10, 12], released.Order());
        Assert.Equal(8, q.FreeDescriptors);
        released.Clear();
        q.ReleaseInFlight(released.Add);
        Assert.Empty(released);
    }

    [Fact]
    public void ADeviceRewritingTheDescriptorTableCannotCorruptTheFreeList()
    {
        // The free list and the chain links are the driver's own: a device that loops every next field, points
        // every addr elsewhere and flips flags changes neither what is freed nor what the device sees next time.
        var q = Create(8, out var l);
        int head = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x2000), 4, false), new VirtqBuffer(new DmaAddress(0x3000), 1, true)], token: 1);
        int single = q.Enqueue(new DmaAddress(0x4000), 64, VirtqDescriptorFlags.Write, token: 2);
        q.Publish();
        for (int i = 0; i < 8; i++)
        {
            byte* d = (byte*)_memory + l.DescriptorOffset + VirtqDescriptorLayout.Size * i;
            *(ulong*)(d + VirtqDescriptorLayout.Address) = 0xDEAD_0000;
            *(ushort*)(d + VirtqDescriptorLayout.Flags) = (ushort)(VirtqDescriptorFlags.Next | VirtqDescriptorFlags.Indirect);
            *(ushort*)(d + VirtqDescriptorLayout.Next) = (ushort)head;
        }
        DeviceUses(l, (ushort)single, 64);
        DeviceUses(l, (ushort)head, 1);
        Assert.Equal(2, q.UsedCount());
        Assert.Equal(2, q.TakeUsed(out _));
        Assert.Equal(1, q.TakeUsed(out _));
        Assert.Equal(8, q.FreeDescriptors);
        var ids = new HashSet<int>();
        for (int i = 0; i < 8; i++)
        {
            int id = q.Enqueue(new DmaAddress(0x1_0000 + (ulong)i), 10, VirtqDescriptorFlags.None);
            Assert.True(ids.Add(id));
            Assert.Equal((0x1_0000UL + (ulong)i, 10u, (ushort)0, (ushort)0), Desc(l, id));   // written whole at submit
        }
        Assert.Equal(-1, q.Enqueue(default, 1, VirtqDescriptorFlags.None));
    }

    [Theory]
    [InlineData(64u, true)]
    [InlineData(65u, false)]
    [InlineData(uint.MaxValue, false)]
    public void AUsedLengthPastTheWritableBytesOfferedFaultsTheQueue(uint len, bool ok)
    {
        var q = Create(4, out var l);
        int id = q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write, token: 3);
        q.Publish();
        DeviceUses(l, (ushort)id, len);
        if (ok)
        {
            Assert.Equal(3, q.TakeUsed(out uint got));
            Assert.Equal(len, got);
            return;
        }
        var e = Assert.Throws<DeviceProtocolViolationException>(() => q.TakeUsed(out _));
        Assert.Contains($"len {len} exceeds the 64 bytes", e.Seen);
        // Nothing the device may still write is released: the chain stays in flight until a reset.
        Assert.True(q.IsInFlight(id));
        Assert.Equal(3, q.FreeDescriptors);
        Assert.Throws<VirtqueueFaultedException>(() => q.Enqueue(default, 1, VirtqDescriptorFlags.None));
        Assert.False(q.DeviceWantsNotification());
        var released = new List<int>();
        q.ReleaseInFlight(released.Add);
        Assert.Equal([3], released);
        q.ResetState();
        Assert.False(q.IsFaulted);
        Assert.True(q.Enqueue(default, 1, VirtqDescriptorFlags.None) >= 0);
    }

    [Fact]
    public void AChainsUsedLengthIsBoundedByItsWritablePartAndAReadOnlyChainsByItsLength()
    {
        var q = Create(8, out var l);
        int control = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x1000), 4, false), new VirtqBuffer(new DmaAddress(0x2000), 1, true)]);
        int tx = q.EnqueueChain([new VirtqBuffer(new DmaAddress(0x3000), 12, false), new VirtqBuffer(new DmaAddress(0x4000), 60, false)]);
        q.Publish();
        DeviceUses(l, (ushort)tx, 72);
        DeviceUses(l, (ushort)control, 2);
        q.TakeUsed(out _);
        Assert.Contains("len 2 exceeds the 1 bytes", Assert.Throws<DeviceProtocolViolationException>(() => q.TakeUsed(out _)).Seen);
    }

    [Theory]
    [InlineData(5)]        // more entries than the queue has
    [InlineData(65535)]    // backwards by one, across the wrap
    public void AUsedIndexJumpFaultsTheQueue(int jump)
    {
        var q = Create(4, out var l);
        for (int i = 0; i < 4; i++) { q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write); }
        q.Publish();
        *(ushort*)(_memory + l.UsedOffset + 2) = (ushort)jump;
        Assert.Throws<DeviceProtocolViolationException>(() => q.UsedCount());
        Assert.Equal(4, q.ChainsInFlight);
    }

    [Fact]
    public void AUsedIndexThatMovesBackFaultsTheQueue()
    {
        var q = Create(4, out var l);
        for (int i = 0; i < 3; i++) { q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write); }
        q.Publish();
        *(ushort*)(_memory + l.UsedOffset + 2) = 3;
        Assert.Equal(3, q.UsedCount());
        *(ushort*)(_memory + l.UsedOffset + 2) = 1;
        Assert.Throws<DeviceProtocolViolationException>(() => q.UsedCount());
    }

    [Fact]
    public void TakeUsedWithNothingUsedIsTheCallersMistake()
    {
        var q = Create(4, out _);
        q.Enqueue(new DmaAddress(0x1000), 64, VirtqDescriptorFlags.Write);
        q.Publish();
        Assert.Throws<InvalidOperationException>(() => q.TakeUsed(out _));
        Assert.False(q.IsFaulted);
    }
}
