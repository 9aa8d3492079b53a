using System.Buffers.Binary;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;
using Vfio.Net;

namespace Vfio.Igb.Tests;

/// <summary>
/// The port abstraction's per-packet checksum flags on igb (issue 19: one port abstraction; a forwarder written
/// against it runs unchanged on virtio-net and igb): TxBurst turns <see cref="PacketFlags.TxIpChecksum"/> and
/// <see cref="PacketFlags.TxL4Checksum"/> into context descriptors and POPTS bits, one context per run of packets that
/// share it. Frames are built with PacketDotNet on link-local addresses (169.254.0.0/16, fe80::/10), and what the
/// 82576 does with them (§7.2.5: sum from TUCSS to the end, complement at TUCSO; IPv4 header sum at IPCSO) is done
/// here on the frames the fake device fetched, then checked by PacketDotNet.
/// </summary>
public sealed class PortChecksumOffloadTests
{
    private static readonly IgbOptions Options = new() { RingSize = 64, PoolSize = 256 };

    private static byte[] Udp4(int payload)
    {
        var udp = new UdpPacket(1000, 2000) { PayloadData = Enumerable.Range(0, payload).Select(i => (byte)i).ToArray() };
        var ip = new IPv4Packet(IPAddress.Parse("169.254.1.1"), IPAddress.Parse("169.254.1.2")) { PayloadPacket = udp, TimeToLive = 64 };
        var eth = new EthernetPacket(PhysicalAddress.Parse("02-00-00-00-00-01"), PhysicalAddress.Parse("02-00-00-00-00-02"), EthernetType.IPv4) { PayloadPacket = ip };
        ip.UpdateCalculatedValues();
        udp.UpdateCalculatedValues();
        return eth.Bytes;
    }

    private static byte[] Tcp6(int payload)
    {
        var tcp = new TcpPacket(40000, 443) { PayloadData = Enumerable.Range(0, payload).Select(i => (byte)(i * 3)).ToArray(), Acknowledgment = true, WindowSize = 512 };
        var ip = new IPv6Packet(IPAddress.Parse("fe80::1"), IPAddress.Parse("fe80::2")) { PayloadPacket = tcp, HopLimit = 64 };
        var eth = new EthernetPacket(PhysicalAddress.Parse("02-00-00-00-00-01"), PhysicalAddress.Parse("02-00-00-00-00-02"), EthernetType.IPv6) { PayloadPacket = ip };
        ip.UpdateCalculatedValues();
        return eth.Bytes;
    }

    private static PacketBuffer Load(PacketPool pool, byte[] frame, PacketFlags flags)
    {
        Assert.True(pool.TryAllocate(out var p));
        frame.CopyTo(p.Room);
        p.Length = frame.Length;
        // Garbage where the checksums go: the driver must not depend on what the caller left there.
        var f = p.Data;
        if (BinaryPrimitives.ReadUInt16BigEndian(f[12..]) == 0x0800) { BinaryPrimitives.WriteUInt16BigEndian(f[24..], 0xBEEF); BinaryPrimitives.WriteUInt16BigEndian(f[40..], 0xBEEF); }
        else if (BinaryPrimitives.ReadUInt16BigEndian(f[12..]) == 0x86DD) { BinaryPrimitives.WriteUInt16BigEndian(f[(14 + 40 + 16)..], 0xBEEF); }
        p.Flags = flags;
        return p;
    }

    /// <summary>What the device does for POPTS.TXSM/IXSM with the context's MACLEN and IPLEN (§7.2.5).</summary>
    private static byte[] AsTheDeviceInserts(byte[] frame, ulong popts, int macLength, int ipLength, bool tcp)
    {
        var f = (byte[])frame.Clone();
        if ((popts & AdvancedDescriptor.TxPopulateIpChecksum) != 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(macLength + 10), (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, f.AsSpan(macLength, ipLength))));
        }
        if ((popts & AdvancedDescriptor.TxPopulateL4Checksum) != 0)
        {
            int start = macLength + ipLength;
            int field = start + (tcp ? 16 : 6);
            ushort sum = (ushort)~InternetChecksum.Fold(InternetChecksum.Add(0, f.AsSpan(start)));
            BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(field), sum);
        }
        return f;
    }

    private static byte[] WithoutChecksums(byte[] frame, bool tcp)
    {
        var f = (byte[])frame.Clone();
        if (tcp) { f.AsSpan(14 + 40 + 16, 2).Clear(); }
        else { f.AsSpan(24, 2).Clear(); f.AsSpan(40, 2).Clear(); }
        return f;
    }

    [Fact]
    public void Flagged_packets_get_one_context_per_run_and_the_device_inserted_checksums_are_right()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options);
        INetPort port = igb;
        const PacketFlags Both = PacketFlags.TxIpChecksum | PacketFlags.TxL4Checksum;
        byte[] u1 = Udp4(40), u2 = Udp4(41), t1 = Tcp6(100), t2 = Tcp6(7), plain = Udp4(30);
        PacketBuffer[] burst =
        [
            Load(igb.Pool, u1, Both), Load(igb.Pool, u2, Both),
            Load(igb.Pool, t1, PacketFlags.TxL4Checksum), Load(igb.Pool, t2, PacketFlags.TxL4Checksum),
            Load(igb.Pool, plain, PacketFlags.None),
        ];
        long doorbells = port.GetStats().Doorbells;
        Assert.Equal(5, port.TxBurst(0, burst));
        Assert.Equal(5, fake.Sent.Count);
        // Two contexts (UDP over IPv4, TCP over IPv6), three tail writes (the unflagged packet is its own run).
        Assert.Equal(2, fake.Contexts.Count);
        Assert.Equal(3, port.GetStats().Doorbells - doorbells);
        Assert.Equal(14UL, (fake.Contexts[0].Low >> 9) & 0x7F);
        Assert.Equal(20UL, fake.Contexts[0].Low & 0x1FF);
        Assert.Equal(40UL, fake.Contexts[1].Low & 0x1FF);
        Assert.Equal(0UL, fake.Contexts[1].High & (1UL << 10));   // TUCMD.IPV4 clear: IPv6

        var both = AdvancedDescriptor.TxPopulateIpChecksum | AdvancedDescriptor.TxPopulateL4Checksum;
        Assert.Equal([both, both, AdvancedDescriptor.TxPopulateL4Checksum, AdvancedDescriptor.TxPopulateL4Checksum, 0UL], fake.Sent.Select(s => s.Popts));
        for (int i = 0; i < 4; i++)
        {
            bool tcp = i >= 2;
            var wire = AsTheDeviceInserts(fake.Sent[i].Frame, fake.Sent[i].Popts, 14, tcp ? 40 : 20, tcp);
            var packet = Packet.ParsePacket(LinkLayers.Ethernet, wire);
            if (tcp) { Assert.True(packet.Extract<TcpPacket>().ValidChecksum, $"frame {i}: TCP checksum"); }
            else
            {
                Assert.True(packet.Extract<IPv4Packet>().ValidIPChecksum, $"frame {i}: IPv4 header checksum");
                Assert.True(packet.Extract<UdpPacket>().ValidChecksum, $"frame {i}: UDP checksum");
            }
            // Nothing but the checksum fields changed.
            var sent = tcp ? new[] { t1, t2 }[i - 2] : new[] { u1, u2 }[i];
            Assert.Equal(WithoutChecksums(sent, tcp), WithoutChecksums(wire, tcp));
        }
        Assert.Equal(plain.Length, fake.Sent[4].Frame.Length);
    }

    [Fact]
    public void A_flagged_frame_that_is_not_tcp_or_udp_over_ip_leaves_unchanged_without_offload()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options);
        var arp = new byte[60];
        BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(12), 0x0806);
        arp.AsSpan(14).Fill(0x5A);
        Assert.Equal(1, ((INetPort)igb).TxBurst(0, [Load(igb.Pool, arp, PacketFlags.TxIpChecksum | PacketFlags.TxL4Checksum)]));
        Assert.Single(fake.Sent);
        Assert.Equal(0UL, fake.Sent[0].Popts);
        Assert.Empty(fake.Contexts);
        Assert.Equal(arp, fake.Sent[0].Frame);
    }

    [Fact]
    public void A_burst_that_fills_the_ring_stops_at_the_run_that_did_not_fit()
    {
        var fake = new FakeIgb { AutoTransmit = false };
        using var igb = IgbDevice.Open(fake, Options);
        var burst = Enumerable.Range(0, 80).Select(i => Load(igb.Pool, i % 2 == 0 ? Udp4(20) : Tcp6(20), PacketFlags.TxL4Checksum)).ToArray();
        int sent = ((INetPort)igb).TxBurst(0, burst);
        // Each run is one packet and its context: two slots of the 63 usable ones.
        Assert.Equal(31, sent);
        for (int i = sent; i < burst.Length; i++) { igb.Pool.Free(burst[i]); }
    }
    [Fact]
    public void A_bad_packet_in_a_later_run_throws_before_any_run_is_sent()
    {
        var fake = new FakeIgb();
        using var igb = IgbDevice.Open(fake, Options);
        var good = Load(igb.Pool, Udp4(20), PacketFlags.TxL4Checksum);
        var other = Load(igb.Pool, Tcp6(20), PacketFlags.TxL4Checksum);
        Assert.True(igb.Pool.TryAllocate(out var empty));   // length 0: no descriptor carries it
        Assert.Throws<ArgumentException>(() => ((INetPort)igb).TxBurst(0, [good, other, empty]));
        Assert.Empty(fake.Sent);
        Assert.Equal(0, igb.TransmitInFlight());
        // Still the caller's: each goes back to the pool once, and the port goes on.
        foreach (var p in new[] { good, other, empty }) { igb.Pool.Free(p); }
        Assert.Equal(1, ((INetPort)igb).TxBurst(0, [Load(igb.Pool, Udp4(20), PacketFlags.TxL4Checksum)]));
        Assert.Single(fake.Sent);
    }
}
