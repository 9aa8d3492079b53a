using Vfio.Net;

namespace Vfio.Igb.Tests;

/// <summary>
/// The driver against the in-memory 82576 (<see cref="FakeIgb"/>): bring-up order, MAC and link, bursts end to end
/// through the fake device loop, RSS queue choice, checksum flags and offload requests, statistics, and lifetime.
/// </summary>
public sealed class IgbDeviceTests
{
    private static IgbOptions Options(int pairs = 1, int ring = 64) => new() { QueuePairs = pairs, RingSize = ring, LinkTimeout = TimeSpan.Zero };

    [Fact]
    public void Bring_up_masks_interrupts_resets_then_reads_the_mac_then_sets_up_rings_then_enables()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        int imc = fake.FirstWrite(IgbReg.Imc);
        int reset = fake.FirstWrite(IgbReg.Ctrl, v => (v & IgbCtrl.Reset) != 0);
        int masterDisable = fake.FirstWrite(IgbReg.Ctrl, v => (v & IgbCtrl.GioMasterDisable) != 0);
        int eerd = fake.FirstWrite(IgbReg.Eerd);
        int ral = fake.FirstWrite(IgbReg.Ral(0));
        int rdbal = fake.FirstWrite(IgbReg.Rdbal(0));
        int rxdctl = fake.FirstWrite(IgbReg.Rxdctl(0), v => (v & IgbQueueControl.Enable) != 0);
        int rdt = fake.FirstWrite(IgbReg.Rdt(0), v => v != 0);
        int rctl = fake.FirstWrite(IgbReg.Rctl, v => (v & IgbRctl.Enable) != 0);
        int tctl = fake.FirstWrite(IgbReg.Tctl, v => (v & IgbTctl.Enable) != 0);
        Assert.All(new[] { imc, reset, masterDisable, eerd, ral, rdbal, rxdctl, rdt, rctl, tctl }, i => Assert.True(i >= 0));
        Assert.True(imc < masterDisable && masterDisable < reset, "interrupts masked and master disabled before the reset");
        Assert.True(reset < eerd && eerd < ral, "MAC read after the reset, then programmed");
        Assert.True(ral < rdbal && rdbal < rxdctl && rxdctl < rdt, "ring base, then enable, then tail");
        Assert.True(rdt < rctl, "receive enabled after the ring is filled");
        Assert.True(fake.FirstWrite(IgbReg.Imc, v => v == 0xFFFF_FFFF) >= 0 && fake.Writes.FindLastIndex(w => w.Offset == IgbReg.Imc) > reset, "interrupts masked again after the reset");
        Assert.Equal(1, fake.ResetCount);
        Assert.Equal("525400123456", igb.MacAddress.ToString());
        Assert.True(igb.IsLinkUp);
        Assert.Equal(1000, igb.LinkSpeedMbps);
        Assert.True(igb.IsFullDuplex);
        Assert.Equal(1, igb.QueuePairCount);
        // §8.10.1/§8.10.2: CRC stripped, broadcast accepted, advanced one-buffer descriptors of 2 KB.
        Assert.Equal(IgbRctl.Enable | IgbRctl.StripCrc | IgbRctl.BroadcastAccept, fake[IgbReg.Rctl]);
        Assert.Equal(2u | IgbSrrctl.DescTypeAdvancedOneBuffer, fake[IgbReg.Srrctl(0)]);
        Assert.Equal(63u, fake[IgbReg.Rdt(0)]);   // one slot stays empty
        Assert.Equal(IgbRxcsum.IpOffload | IgbRxcsum.TcpUdpOffload, fake[IgbReg.Rxcsum]);
        Assert.Equal(0u, fake[IgbReg.Mrqc]);
    }

    [Fact]
    public void Mac_comes_from_ral0_when_the_eeprom_does_not_answer_and_link_down_is_reported()
    {
        var fake = new FakeIgb([0x02, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE]) { EepromAnswers = false, LinkComesUp = false };
        using var igb = IgbDevice.Open(fake, Options());
        Assert.Equal("02AABBCCDDEE", igb.MacAddress.ToString());
        Assert.False(igb.IsLinkUp);
    }

    [Fact]
    public void Other_devices_are_refused()
    {
        var e = Assert.Throws<IgbException>(() => IgbDevice.Open(new FakeIgb(deviceId: 0x10CA), Options()));
        Assert.Contains("82576", e.Message);
        Assert.True(IgbDevice.IsSupported(0x8086, 0x10C9));
        Assert.False(IgbDevice.IsSupported(0x1AF4, 0x1041));
    }

    [Fact]
    public void A_device_that_never_finishes_its_reset_fails_the_open_with_a_timeout()
    {
        var fake = new FakeIgb { IgnoreReset = true };
        Assert.Throws<DeviceTimeoutException>(() => IgbDevice.Open(fake, Options()));
    }

    [Fact]
    public void Frames_sent_come_out_of_the_device_and_delivered_frames_are_received_with_flags()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        var pool = igb.Pool;
        var mac = igb.MacAddress.GetAddressBytes();

        var frame = Frames.Udp(mac, "169.254.0.1", "169.254.0.2", 1000, 2000);
        Assert.True(pool.TryAllocate(out var p));
        frame.CopyTo(p.Room);
        p.Length = frame.Length;
        Assert.Equal(1, igb.Transmit([p], 0, new IgbTxOffload(IgbTxChecksum.Ipv4 | IgbTxChecksum.Udp)));
        Assert.Single(fake.Sent);
        Assert.Equal(frame, fake.Sent[0].Frame);
        Assert.Equal(AdvancedDescriptor.TxPopulateIpChecksum | AdvancedDescriptor.TxPopulateL4Checksum, fake.Sent[0].Popts);
        Assert.Single(fake.Contexts);
        // The same offload again needs no new context; the sent packet went back to the pool.
        Assert.True(pool.TryAllocate(out var q));
        frame.CopyTo(q.Room);
        q.Length = frame.Length;
        Assert.Equal(1, igb.Transmit([q], 0, new IgbTxOffload(IgbTxChecksum.Ipv4 | IgbTxChecksum.Udp)));
        Assert.Single(fake.Contexts);
        Assert.Equal(0, igb.TransmitInFlight());

        for (int i = 0; i < 5; i++)
        {
            Assert.True(fake.Deliver(Frames.Udp(mac, "169.254.0.2", "169.254.0.1", 2000, (ushort)(1000 + i), fill: (byte)i),
                extraStatus: AdvancedDescriptor.RxStatusIpChecksum | AdvancedDescriptor.RxStatusL4Checksum | AdvancedDescriptor.RxStatusUdpChecksum
                    | (i == 4 ? AdvancedDescriptor.RxErrorL4Checksum : 0)));
        }
        var got = new PacketBuffer[8];
        var meta = new IgbRxMetadata[8];
        Assert.Equal(5, igb.Receive(got, meta));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(frame.Length, got[i].Length);
            Assert.Equal((byte)i, got[i].Data[^1]);
            Assert.True((meta[i].Flags & IgbRxFlags.L4ChecksumChecked) != 0);
            Assert.Equal(i == 4, meta[i].HasChecksumError);
        }
        PacketPool.Free(got.AsSpan(0, 5));
        Assert.Equal(5, igb.Stats.RxPackets);
        Assert.Equal(2, igb.Stats.TxPackets);

        var hw = igb.ReadHardwareStats();
        Assert.Equal(2, hw.GoodPacketsTransmitted);
        Assert.Equal(5, hw.GoodPacketsReceived);
        Assert.Equal(5L * (frame.Length + 4), hw.GoodOctetsReceived);
        Assert.Equal(5, igb.ReadHardwareStats().GoodPacketsReceived);   // cleared on read, accumulated by the driver
    }

    [Fact]
    public void Frames_marked_rxe_are_dropped_and_counted()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        int inUse = igb.Pool.InUseCount;
        fake.Deliver(Frames.Udp(igb.MacAddress.GetAddressBytes(), "169.254.0.2", "169.254.0.1", 1, 2), extraStatus: AdvancedDescriptor.RxErrorReceive);
        Assert.Equal(0, igb.Receive(new PacketBuffer[4]));
        Assert.Equal(1, igb.Stats.RxErrors);
        Assert.Equal(inUse - 1, igb.Pool.InUseCount);   // dropped buffer freed; the slot waits for the refill threshold
    }

    [Fact]
    public void Rss_programs_key_table_and_hash_fields_and_flows_land_on_the_queue_the_table_names()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(pairs: 2));
        Assert.Equal(2, igb.QueuePairCount);
        Assert.Equal(IgbMrqc.EnableRss | IgbMrqc.AllHashes, fake[IgbReg.Mrqc]);
        Assert.NotEqual(0u, fake[IgbReg.Rxcsum] & IgbRxcsum.PacketChecksumDisable);
        Assert.Equal(0xda565a6du, fake[IgbReg.Rssrk]);
        Assert.NotEqual(0u, fake[IgbReg.Srrctl(1)] & IgbSrrctl.DropEnable);

        var mac = igb.MacAddress.GetAddressBytes();
        var perQueue = new int[2];
        for (ushort port = 1; port <= 32; port++)
        {
            var f = Frames.Udp(mac, "169.254.3.1", "169.254.3.2", port, 9);
            int expected = igb.Rss!.QueueFor(ToeplitzHash.ComputeFlow(IgbRssConfiguration.VerificationKey,
                System.Net.IPAddress.Parse("169.254.3.1"), System.Net.IPAddress.Parse("169.254.3.2"), port, 9));
            Assert.Equal(expected, fake.QueueFor(f, out _, out _));
            Assert.True(fake.Deliver(f));
            var got = new PacketBuffer[1];
            var meta = new IgbRxMetadata[1];
            Assert.Equal(1, igb.Receive(got, meta, expected));
            Assert.Equal(0, igb.Receive(new PacketBuffer[1], 1 - expected));
            Assert.True((meta[0].Flags & IgbRxFlags.RssHashValid) != 0);
            got[0].Free();
            perQueue[expected]++;
        }
        Assert.All(perQueue, n => Assert.True(n > 0, "32 flows spread over both queues"));

        // Everything to queue 1 now.
        var table = new byte[128];
        Array.Fill(table, (byte)1);
        igb.SetRss(new IgbRssConfiguration(IgbRssConfiguration.VerificationKey, table));
        Assert.Equal(1, fake.QueueFor(Frames.Udp(mac, "169.254.3.1", "169.254.3.2", 1, 9), out _, out _));
        Assert.Throws<ArgumentException>(() => igb.SetRss(IgbRssConfiguration.RoundRobin(3)));
    }

    [Fact]
    public void Dispose_stops_the_device_and_returns_every_buffer_to_a_pool_the_caller_owns()
    {
        var fake = new FakeIgb();
        using var pool = new PacketPool(fake.Dma, 512, IgbDevice.ReceiveBufferSize + PacketPool.Headroom);
        var igb = IgbDevice.Open(fake, Options() with { Pool = pool });
        fake.AutoTransmit = false;   // the device holds what is sent
        Assert.True(pool.TryAllocate(out var p));
        p.Length = 60;
        Assert.Equal(1, igb.Transmit([p]));
        Assert.Equal(64, pool.InUseCount);   // 63 receive buffers and the transmitted one
        igb.Dispose();
        Assert.Equal(0, pool.InUseCount);
        Assert.Equal(2, fake.ResetCount);
        Assert.Equal(0u, fake[IgbReg.Rctl] & IgbRctl.Enable);
        Assert.False(fake.Config.BusMaster);
        Assert.Equal(0, fake.Memory.LiveBuffers - 1);   // only the pool's chunk is left
        Assert.Throws<ObjectDisposedException>(() => igb.Receive(new PacketBuffer[1]));
    }

    [Fact]
    public void A_release_request_stops_the_port_and_bursts_then_fail_with_device_released()
    {
        var fake = new FakeIgb();
        using var pool = new PacketPool(fake.Dma, 512, IgbDevice.ReceiveBufferSize + PacketPool.Headroom);
        var igb = IgbDevice.Open(fake, Options() with { Pool = pool });
        int held = pool.InUseCount;   // the receive ring's buffers
        Assert.True(held > 0);
        fake.RequestRelease();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (fake.ResetCount < 2 && DateTime.UtcNow < deadline) { Thread.Sleep(5); }
        Assert.Equal(2, fake.ResetCount);
        SpinWait.SpinUntil(() =>
        {
            try { igb.Receive(new PacketBuffer[1]); return false; }
            catch (DeviceReleasedException) { return true; }
        }, TimeSpan.FromSeconds(30));
        Assert.Throws<DeviceReleasedException>(() => igb.Receive(new PacketBuffer[1]));
        Assert.Throws<DeviceReleasedException>(() => igb.Reset());
        // The pool is the owner's thread's alone (not thread-safe): the release thread left the rings' buffers to
        // the owner's Dispose, which gives every one back.
        Assert.Equal(held, pool.InUseCount);
        igb.Dispose();
        Assert.Equal(0, pool.InUseCount);
    }

    [Fact]
    public void Reset_brings_the_port_up_again_with_the_same_queues()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(pairs: 2));
        int inUse = igb.Pool.InUseCount;
        igb.Reset();
        Assert.Equal(2, igb.QueuePairCount);
        Assert.Equal(inUse, igb.Pool.InUseCount);
        Assert.True(fake.Deliver(Frames.Udp(igb.MacAddress.GetAddressBytes(), "1.1.1.1", "2.2.2.2", 5, 6), queue: 1));
        var got = new PacketBuffer[1];
        Assert.Equal(1, igb.Receive(got, 1));
        got[0].Free();
    }

    [Fact]
    public void Rings_wrap_many_times_and_a_full_transmit_ring_takes_only_what_fits()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options(ring: 16));
        var mac = igb.MacAddress.GetAddressBytes();
        var got = new PacketBuffer[4];
        for (int i = 0; i < 100; i++)
        {
            Assert.True(fake.Deliver(Frames.Udp(mac, "1.1.1.1", "2.2.2.2", 5, (ushort)i, fill: (byte)i)), $"frame {i}: no descriptor");
            Assert.Equal(1, igb.Receive(got));
            Assert.Equal((byte)i, got[0].Data[^1]);
            Assert.True(igb.Pool.TryAllocate(out var echo));
            got[0].Data.CopyTo(echo.Room);
            echo.Length = got[0].Length;
            got[0].Free();
            Assert.Equal(1, igb.Transmit([echo]));
        }
        Assert.Equal(100, fake.Sent.Count);
        Assert.Equal((byte)99, fake.Sent[^1].Frame[^1]);

        fake.AutoTransmit = false;
        var burst = new PacketBuffer[16];   // the port's own pool: 32 buffers, 15 of them in the receive ring
        Assert.Equal(16, igb.Pool.Allocate(burst));
        foreach (var p in burst) { p.Length = 60; }
        Assert.Equal(15, igb.Transmit(burst));            // 16 slots, one kept empty
        Assert.Equal(0, igb.Transmit(burst.AsSpan(15)));
        PacketPool.Free(burst.AsSpan(15));
        Assert.Equal(15, igb.TransmitInFlight());
        fake.ProcessTransmit(0);
        Assert.Equal(0, igb.TransmitInFlight());
    }

    [Fact]
    public void Empty_packets_are_refused_before_any_is_taken_and_promiscuous_mode_toggles()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options());
        var burst = new PacketBuffer[2];
        Assert.Equal(2, igb.Pool.Allocate(burst));
        burst[0].Length = 60;
        Assert.Throws<ArgumentException>(() => igb.Transmit(burst));
        Assert.Empty(fake.Sent);
        PacketPool.Free(burst);
        igb.SetPromiscuous(unicast: true, multicast: true);
        Assert.Equal(IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous, fake[IgbReg.Rctl] & (IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous));
        igb.SetPromiscuous(unicast: false, multicast: false);
        Assert.Equal(0u, fake[IgbReg.Rctl] & (IgbRctl.UnicastPromiscuous | IgbRctl.MulticastPromiscuous));
        Assert.NotEqual(0u, fake[IgbReg.Rctl] & IgbRctl.Enable);
    }

    [Fact]
    public void Options_out_of_range_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => IgbDevice.Open(new FakeIgb(), Options(pairs: 17)));
        Assert.Throws<ArgumentOutOfRangeException>(() => IgbDevice.Open(new FakeIgb(), Options(ring: 12)));
        var fake = new FakeIgb();
        using var small = new PacketPool(fake.Dma, 64);   // 2048-byte buffers: 1920 data bytes, less than SRRCTL's 2 KB
        Assert.Throws<ArgumentException>(() => IgbDevice.Open(fake, Options() with { Pool = small }));
    }
}
