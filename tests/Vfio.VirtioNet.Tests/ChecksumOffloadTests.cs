using System.Buffers.Binary;
using System.Net;
using PacketDotNet;
using Vfio.Emulation.VirtioNet;
using Vfio.Net;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;
using PacketFlags = Vfio.Net.PacketFlags;

namespace Vfio.VirtioNet.Tests;

public sealed class InProcessChecksumOffloadTests() : ChecksumOffloadTests(VirtioTransport.InProcess);

public sealed class SocketChecksumOffloadTests() : ChecksumOffloadTests(VirtioTransport.Socket);

public sealed class SocketMessageDmaChecksumOffloadTests() : ChecksumOffloadTests(VirtioTransport.SocketMessages);

/// <summary>The kinds of frame the offload tests send.</summary>
public enum ChecksumFrame { UdpIPv4, TcpIPv4, TcpIPv6 }

/// <summary>
/// Checksum offload (virtio 1.2 §5.1.6.2, §5.1.6.4) between two drivers over the emulated hub: what is asked for
/// arrives right, checked here with RFC 1071 arithmetic of the test's own and with PacketDotNet.
/// </summary>
public abstract class ChecksumOffloadTests(VirtioTransport transport) : IDisposable
{
    private const ushort Garbage = 0xDEAD;
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        for (int i = _disposables.Count - 1; i >= 0; i--) { _disposables[i].Dispose(); }
    }

    /// <summary>A frame of <paramref name="kind"/> whose TCP/UDP and IPv4 header checksums are garbage; and where its L4 checksum field is.</summary>
    internal static (byte[] Frame, int ChecksumAt) Build(ChecksumFrame kind, int payload = 37)
    {
        bool v6 = kind == ChecksumFrame.TcpIPv6;
        bool tcp = kind != ChecksumFrame.UdpIPv4;
        int ipHeader = v6 ? 40 : 20, l4Header = tcp ? 20 : 8;
        var f = new byte[14 + ipHeader + l4Header + payload];
        f.AsSpan(0, 6).Fill(0xff);
        f[6] = 0x52; f[7] = 0x54; f[11] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), v6 ? (ushort)0x86DD : (ushort)0x0800);
        var ip = f.AsSpan(14);
        if (v6)
        {
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(l4Header + payload));
            ip[6] = 6;
            ip[7] = 64;
            IPAddress.Parse("fd00::1:2:3").TryWriteBytes(ip[8..], out _);
            IPAddress.Parse("fd00::abcd:99").TryWriteBytes(ip[24..], out _);
        }
        else
        {
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ipHeader + l4Header + payload));
            ip[8] = 64;
            ip[9] = tcp ? (byte)6 : (byte)17;
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Garbage);
            IPAddress.Parse("169.254.12.3").TryWriteBytes(ip[12..], out _);
            IPAddress.Parse("169.254.200.9").TryWriteBytes(ip[16..], out _);
        }
        var l4 = ip[ipHeader..];
        BinaryPrimitives.WriteUInt16BigEndian(l4, 40001);
        BinaryPrimitives.WriteUInt16BigEndian(l4[2..], 443);
        int checksumAt;
        if (tcp)
        {
            BinaryPrimitives.WriteUInt32BigEndian(l4[4..], 0x01020304);
            l4[12] = 5 << 4;
            l4[13] = 0x18;   // PSH, ACK
            BinaryPrimitives.WriteUInt16BigEndian(l4[14..], 8192);
            checksumAt = 14 + ipHeader + 16;
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)(l4Header + payload));
            checksumAt = 14 + ipHeader + 6;
        }
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(checksumAt), Garbage);
        for (int i = 0; i < payload; i++) { l4[l4Header + i] = (byte)(i * 7 + 1); }
        return (f, checksumAt);
    }

    /// <summary>RFC 1071 §4.1, straight from the text: 16-bit big-endian words, carries folded, complemented.</summary>
    internal static ushort InternetChecksum(params byte[][] parts)
    {
        uint sum = 0;
        foreach (var p in parts)
        {
            for (int i = 0; i < p.Length; i += 2) { sum += (uint)(p[i] << 8 | (i + 1 < p.Length ? p[i + 1] : 0)); }
        }
        while (sum > 0xFFFF) { sum = (sum & 0xFFFF) + (sum >> 16); }
        return (ushort)~sum;
    }

    /// <summary>Whether the frame's TCP/UDP checksum (and an IPv4 header's) is right, by the test's own arithmetic.</summary>
    internal static bool ChecksumsRight(byte[] f)
    {
        bool v6 = BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(12)) == 0x86DD;
        int ipHeader = v6 ? 40 : (f[14] & 0xF) * 4;
        byte protocol = v6 ? f[14 + 6] : f[14 + 9];
        int l4Length = v6 ? BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(18)) : BinaryPrimitives.ReadUInt16BigEndian(f.AsSpan(16)) - ipHeader;
        var addresses = v6 ? f[(14 + 8)..(14 + 40)] : f[(14 + 12)..(14 + 20)];
        byte[] pseudoTail = [0, 0, (byte)(l4Length >> 8), (byte)l4Length, 0, 0, 0, protocol];
        var segment = f[(14 + ipHeader)..(14 + ipHeader + l4Length)];
        if (!v6 && InternetChecksum(f[14..(14 + ipHeader)]) != 0) { return false; }
        return InternetChecksum(addresses, pseudoTail, segment) == 0;
    }

    /// <summary>PacketDotNet's view of the same frame.</summary>
    private static void AssertPacketDotNetAgrees(byte[] f)
    {
        var packet = Packet.ParsePacket(LinkLayers.Ethernet, f);
        if (packet.Extract<IPv4Packet>() is { } v4) { Assert.True(v4.ValidIPChecksum, "PacketDotNet: IPv4 header checksum"); }
        bool valid = packet.Extract<TcpPacket>() is { } tcp ? tcp.ValidChecksum
            : packet.Extract<UdpPacket>() is { } udp ? udp.ValidChecksum
            : throw new Xunit.Sdk.XunitException("PacketDotNet found no TCP or UDP header");
        Assert.True(valid, "PacketDotNet: transport checksum");
    }

    private (EmulatedVirtioNet DevA, EmulatedVirtioNet DevB, VirtioNetDevice A, VirtioNetDevice B) Open(bool offloadA, bool offloadB, Action<EmulatedVirtioNet, EmulatedVirtioNet>? configure = null)
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 64, transport: transport);
        _disposables.Add(devA);
        _disposables.Add(devB);
        configure?.Invoke(devA, devB);
        var a = VirtioNetDevice.Open(devA, new VirtioNetOptions { ChecksumOffload = offloadA });
        _disposables.Add(a);
        var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { ChecksumOffload = offloadB, Pool = transport == VirtioTransport.InProcess ? a.Pool : null });
        _disposables.Add(b);
        return (devA, devB, a, b);
    }

    /// <summary>Sends <paramref name="frames"/> from <paramref name="from"/> with <paramref name="flags"/>; returns what <paramref name="to"/> received, with its flags.</summary>
    private static List<(byte[] Frame, PacketFlags Flags)> Send(VirtioNetDevice from, VirtioNetDevice to, IReadOnlyList<byte[]> frames, PacketFlags flags, int expect = -1)
    {
        var tx = new PacketBuffer[frames.Count];
        Assert.Equal(frames.Count, from.Pool.Allocate(tx));
        for (int i = 0; i < frames.Count; i++)
        {
            frames[i].CopyTo(tx[i].Room);
            tx[i].Length = frames[i].Length;
            tx[i].Flags = flags;
        }
        Assert.Equal(frames.Count, from.Transmit(tx));
        if (expect < 0) { expect = frames.Count; }
        var got = new List<(byte[], PacketFlags)>();
        var rx = new PacketBuffer[8];
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (got.Count < expect && DateTime.UtcNow < deadline)
        {
            int n = to.Receive(rx);
            for (int i = 0; i < n; i++) { got.Add((rx[i].Data.ToArray(), rx[i].Flags)); }
            PacketPool.Free(rx.AsSpan(0, n));
            from.TransmitInFlight();
            if (n == 0) { Thread.Yield(); }
        }
        Assert.Equal(expect, got.Count);
        return got;
    }

    public static TheoryData<ChecksumFrame, bool> Kinds() =>
        new() { { ChecksumFrame.UdpIPv4, true }, { ChecksumFrame.TcpIPv4, true }, { ChecksumFrame.TcpIPv6, true },
                { ChecksumFrame.UdpIPv4, false }, { ChecksumFrame.TcpIPv4, false }, { ChecksumFrame.TcpIPv6, false } };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_port_options_turn_the_offload_on_through_the_driver_registry(bool offload)
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 64, transport: transport);
        _disposables.Add(devA);
        _disposables.Add(devB);
        using var port = new NetDriverRegistry { VirtioNetDriver.Registration }.Open(devA, new NetPortOptions { ChecksumOffload = offload });
        AssertChecksumFeatures(offload, Assert.IsType<VirtioNetDevice>(port), devA);
    }

    /// <summary>Driver and device agree on CSUM/GUEST_CSUM (virtio 1.2 §5.1.3): both on with the offload, both off without.</summary>
    private static void AssertChecksumFeatures(bool offload, VirtioNetDevice driver, EmulatedVirtioNet device)
    {
        ulong both = VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum;
        Assert.Equal(offload ? both : 0, driver.NegotiatedFeatures & both);
        Assert.Equal(offload ? both : 0, device.DriverFeatures & both);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Requested_checksums_arrive_right_whether_offloaded_or_computed_by_the_driver(ChecksumFrame kind, bool offload)
    {
        var (devA, devB, a, b) = Open(offload, offload);
        AssertChecksumFeatures(offload, b, devB);
        var frames = new[] { Build(kind).Frame, Build(kind, payload: 0).Frame, Build(kind, payload: 1400).Frame };
        var got = Send(b, a, frames, PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum);
        for (int i = 0; i < frames.Length; i++)
        {
            var (frame, flags) = got[i];
            Assert.Equal(frames[i].Length, frame.Length);
            Assert.True(ChecksumsRight(frame), $"{kind} frame {i}: checksum wrong");
            AssertPacketDotNetAgrees(frame);
            // Nothing but the checksum fields changed.
            var (_, at) = Build(kind);
            var expected = (byte[])frame.Clone();
            frames[i].AsSpan(0, at).CopyTo(expected);
            frames[i].AsSpan(at + 2).CopyTo(expected.AsSpan(at + 2));
            if (kind != ChecksumFrame.TcpIPv6) { expected[24] = frame[24]; expected[25] = frame[25]; }
            Assert.Equal(expected, frame);
            // The model completed the checksum, so a GUEST_CSUM receiver hears DATA_VALID; without it, nothing.
            Assert.Equal(offload ? PacketFlags.L4ChecksumGood : PacketFlags.None, flags);
        }
        Assert.Equal(0, b.TxChecksumSkipped);
    }

    [Theory]
    [InlineData(ChecksumFrame.UdpIPv4)]
    [InlineData(ChecksumFrame.TcpIPv6)]
    public void Data_valid_is_reported_only_for_frames_whose_checksum_the_device_verified(ChecksumFrame kind)
    {
        // The sender computes in software (no CSUM), so the receiving port verifies: right -> DATA_VALID, wrong -> nothing.
        var (_, _, a, b) = Open(offloadA: true, offloadB: false);
        var right = Build(kind).Frame;
        var wrong = Build(kind).Frame;
        var sent = Send(b, a, [right], PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum);
        Assert.True(ChecksumsRight(sent[0].Frame));
        Assert.Equal(PacketFlags.L4ChecksumGood, sent[0].Flags);
        var bad = Send(b, a, [wrong], PacketFlags.None);
        Assert.False(ChecksumsRight(bad[0].Frame));
        Assert.Equal(PacketFlags.None, bad[0].Flags);
    }

    [Theory]
    [InlineData(ChecksumFrame.UdpIPv4)]
    [InlineData(ChecksumFrame.TcpIPv4)]
    [InlineData(ChecksumFrame.TcpIPv6)]
    public void A_partial_checksum_the_device_passes_on_is_completed_by_the_receiving_driver(ChecksumFrame kind)
    {
        var (devA, _, a, b) = Open(offloadA: true, offloadB: true, (devA, _) => devA.Model.ForwardPartialChecksums = true);
        var got = Send(b, a, [Build(kind).Frame, Build(kind, payload: 999).Frame], PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum);
        foreach (var (frame, flags) in got)
        {
            Assert.True(ChecksumsRight(frame), $"{kind}: the driver did not complete the partial checksum");
            AssertPacketDotNetAgrees(frame);
            Assert.Equal(PacketFlags.L4ChecksumGood, flags);
        }
    }

    [Fact]
    public void Without_csum_offered_the_driver_computes_the_checksum_itself()
    {
        var (devA, devB, a, b) = Open(offloadA: true, offloadB: true, (devA, devB) =>
        {
            devA.OfferedFeatures &= ~(VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum);
            devB.OfferedFeatures &= ~(VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum);
        });
        Assert.Equal(0UL, devB.DriverFeatures & (VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum));
        var got = Send(b, a, [Build(ChecksumFrame.TcpIPv4).Frame, Build(ChecksumFrame.UdpIPv4).Frame], PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum);
        Assert.All(got, g => Assert.True(ChecksumsRight(g.Frame)));
        Assert.All(got, g => Assert.Equal(PacketFlags.None, g.Flags));
    }

    [Fact]
    public void A_frame_the_driver_cannot_parse_goes_out_unchanged_and_is_counted()
    {
        var (_, _, a, b) = Open(offloadA: true, offloadB: true);
        var arp = new byte[60];
        arp.AsSpan(0, 6).Fill(0xff);
        BinaryPrimitives.WriteUInt16BigEndian(arp.AsSpan(12), 0x0806);
        arp[20] = 0xAB;
        var got = Send(b, a, [arp], PacketFlags.TxL4Checksum);
        Assert.Equal(arp, got[0].Frame);
        Assert.Equal(1, b.TxChecksumSkipped);
    }

    [Theory]
    [InlineData(VirtioNetHostileMode.ChecksumStartPastPacket)]
    [InlineData(VirtioNetHostileMode.ChecksumOffsetPastPacket)]
    public void A_partial_checksum_outside_the_packet_is_dropped_and_counted(VirtioNetHostileMode mode)
    {
        var (devA, _, a, b) = Open(offloadA: true, offloadB: true);
        devA.Model.Hostile = mode;
        var frames = Enumerable.Range(0, 4).Select(_ => Build(ChecksumFrame.TcpIPv4).Frame).ToArray();
        var got = Send(b, a, frames, PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum, expect: 3);
        Assert.Equal(1, devA.Model.HostileActs);
        Assert.Equal(1, a.RxBadChecksumHeaders);
        Assert.Equal(1, a.Stats.RxDropped);
        Assert.All(got, g => Assert.True(ChecksumsRight(g.Frame)));
        // The port carries on.
        var after = Send(b, a, [Build(ChecksumFrame.UdpIPv4).Frame], PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum);
        Assert.True(ChecksumsRight(after[0].Frame));
        Assert.Equal(VirtioStatus.Reset, a.Status & VirtioStatus.DeviceNeedsReset);
        Assert.Equal(1, a.RxBadChecksumHeaders);
    }
}
