using Vfio.Net;

namespace Vfio.Igb.Tests;

/// <summary>
/// Write-backs against the rules (82576 datasheet §7.1.5.2, §7.2.3.2.4): each ends in
/// <see cref="DeviceProtocolViolationException"/>, the queue faulted (later calls throw
/// <see cref="IgbQueueFaultedException"/>), the other queues working, no buffer freed that the device may hold, and a
/// reset bringing the queue back with every buffer accounted for.
/// </summary>
public sealed class HostileDeviceTests
{
    private const int Ring = 16;

    private static (FakeIgb Fake, IgbDevice Igb, PacketPool Pool) Open(int pairs = 1)
    {
        var fake = new FakeIgb();
        var pool = new PacketPool(fake.Dma, 256, IgbDevice.ReceiveBufferSize + PacketPool.Headroom);
        var igb = IgbDevice.Open(fake, new IgbOptions { QueuePairs = pairs, RingSize = Ring, Pool = pool, LinkTimeout = TimeSpan.Zero });
        return (fake, igb, pool);
    }

    private static void AssertFaultedThenResetHeals(FakeIgb fake, IgbDevice igb, PacketPool pool, int queue = 0)
    {
        Assert.Throws<IgbQueueFaultedException>(() => igb.Receive(new PacketBuffer[4], queue));
        igb.Reset();
        Assert.Equal(igb.QueuePairCount * (Ring - 1), pool.InUseCount);
        Assert.True(fake.Deliver(Frames.Udp(igb.MacAddress.GetAddressBytes(), "1.1.1.1", "2.2.2.2", 5, 6), queue));
        var got = new PacketBuffer[1];
        Assert.Equal(1, igb.Receive(got, queue));
        got[0].Free();
        igb.Dispose();
        Assert.Equal(0, pool.InUseCount);
        pool.Dispose();
    }

    [Fact]
    public void Length_past_the_buffer_offered_faults_the_queue()
    {
        var (fake, igb, pool) = Open();
        fake.WriteRxRaw(0, 0, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | (4000UL << 32));
        var e = Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        Assert.Contains("PKT_LEN", e.Where);
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void Zero_length_faults_the_queue()
    {
        var (fake, igb, pool) = Open();
        fake.WriteRxRaw(0, 0, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket);
        Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void A_frame_spanning_two_buffers_is_refused()
    {
        var (fake, igb, pool) = Open();
        fake.WriteRxRaw(0, 0, 0, AdvancedDescriptor.RxStatusDone | (2048UL << 32));
        var e = Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        Assert.Contains("EOP", e.Where);
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void Done_on_the_receive_slot_never_offered_faults_the_queue()
    {
        var (fake, igb, pool) = Open();
        // Slot 15 is the one the driver keeps empty (tail).
        fake.WriteRxRaw(0, Ring - 1, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | (60UL << 32));
        var e = Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        Assert.Contains("never handed", e.Seen);
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void Packets_taken_before_a_violation_in_the_same_burst_go_back_to_the_pool()
    {
        var (fake, igb, pool) = Open();
        var mac = igb.MacAddress.GetAddressBytes();
        Assert.True(fake.Deliver(Frames.Udp(mac, "1.1.1.1", "2.2.2.2", 5, 6)));
        fake.WriteRxRaw(0, 1, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | (9000UL << 32));
        int before = pool.InUseCount;
        Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4]));
        Assert.Equal(before - 1, pool.InUseCount);   // the good one freed; the rest stay with the faulted ring
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void A_faulted_receive_queue_leaves_the_other_queue_working()
    {
        var (fake, igb, pool) = Open(pairs: 2);
        fake.WriteRxRaw(0, 0, 0, AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | (4000UL << 32));
        Assert.Throws<DeviceProtocolViolationException>(() => igb.Receive(new PacketBuffer[4], 0));
        Assert.True(fake.Deliver(Frames.Udp(igb.MacAddress.GetAddressBytes(), "1.1.1.1", "2.2.2.2", 5, 6), queue: 1));
        var got = new PacketBuffer[1];
        Assert.Equal(1, igb.Receive(got, 1));
        got[0].Free();
        AssertFaultedThenResetHeals(fake, igb, pool);
    }

    [Fact]
    public void Done_on_a_transmit_slot_never_offered_faults_the_queue()
    {
        var (fake, igb, pool) = Open();
        fake.AutoTransmit = false;
        Assert.True(pool.TryAllocate(out var p));
        p.Length = 60;
        Assert.Equal(1, igb.Transmit([p]));
        // Slot 1 is the tail: never handed over.
        fake.WriteTxRaw(0, 1, 0, AdvancedDescriptor.TxStatusDone);
        Assert.Throws<DeviceProtocolViolationException>(() => igb.TransmitInFlight());
        Assert.Throws<IgbQueueFaultedException>(() => igb.Transmit([p]));
        igb.Reset();
        Assert.Equal(Ring - 1, pool.InUseCount);   // the packet the device held is back after the reset
        igb.Dispose();
        Assert.Equal(0, pool.InUseCount);
        pool.Dispose();
    }

    [Fact]
    public void A_head_register_outside_the_slots_handed_over_faults_the_queue()
    {
        var (fake, igb, pool) = Open();
        fake[IgbReg.Rdh(0)] = 900;
        Assert.Throws<DeviceProtocolViolationException>(() => igb.ReceiveBuffersPosted());
        AssertFaultedThenResetHeals(fake, igb, pool);
    }
}
