using System.Buffers.Binary;
using System.Net;
using PacketDotNet;
using Vfio.Emulation.VirtioNet;
using Vfio.Net;
using Vfio.Spec.Virtio;
using Vfio.VirtioNet.Tests.Emulation;
using PacketFlags = Vfio.Net.PacketFlags;

namespace Vfio.VirtioNet.Tests;

public sealed class InProcessSegmentationOffloadTests() : SegmentationOffloadTests(VirtioTransport.InProcess);

public sealed class SocketSegmentationOffloadTests() : SegmentationOffloadTests(VirtioTransport.Socket);

public sealed class SocketMessageDmaSegmentationOffloadTests() : SegmentationOffloadTests(VirtioTransport.SocketMessages);

/// <summary>
/// TCP segmentation offload (virtio 1.2 §5.1.6.2 HOST_TSO4/6, §5.1.6.4 GUEST_TSO4/6 with MRG_RXBUF) between two
/// drivers over the emulated hub: a 60,000-byte TCP packet sent whole arrives whole (joined from many receive
/// buffers) at a port that takes joined packets, or as right segments at one that does not; every checksum is
/// checked with the test's own RFC 1071 arithmetic and with PacketDotNet.
/// </summary>
public abstract class SegmentationOffloadTests(VirtioTransport transport) : IDisposable
{
    private const int Payload = 60_000;
    private const int Mss = 1448;
    private readonly List<IDisposable> _disposables = [];

    public void Dispose()
    {
        for (int i = _disposables.Count - 1; i >= 0; i--) { _disposables[i].Dispose(); }
    }

    /// <summary>A TCP packet of <paramref name="payload"/> bytes between link-local addresses, checksums garbage.</summary>
    private static byte[] Build(bool v6, int payload = Payload)
    {
        var (frame, _) = ChecksumOffloadTests.Build(v6 ? ChecksumFrame.TcpIPv6 : ChecksumFrame.TcpIPv4, payload);
        if (v6)
        {
            IPAddress.Parse("fe80::5054:ff:fe00:1").TryWriteBytes(frame.AsSpan(14 + 8), out _);
            IPAddress.Parse("fe80::5054:ff:fe00:2").TryWriteBytes(frame.AsSpan(14 + 24), out _);
        }
        else
        {
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(14 + 4), 0x1000);   // identification
        }
        for (int i = 0; i < payload; i++) { frame[^(payload - i)] = (byte)(i * 31 + (i >> 8)); }
        return frame;
    }

    private static int HeadersOf(bool v6) => 14 + (v6 ? 40 : 20) + 20;

    private (EmulatedVirtioNet DevA, EmulatedVirtioNet DevB, VirtioNetDevice A, VirtioNetDevice B) Open(bool segmentationB, ushort queueSizeB = 256,
        Action<EmulatedVirtioNet, EmulatedVirtioNet>? configure = null)
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 256, transport: transport);
        _disposables.Add(devA);
        _disposables.Add(devB);
        foreach (var d in new[] { devA, devB })
        {
            d.OfferedFeatures |= VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6 | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6;
        }
        configure?.Invoke(devA, devB);
        var a = VirtioNetDevice.Open(devA, new VirtioNetOptions { SegmentationOffload = true });
        _disposables.Add(a);
        var b = VirtioNetDevice.Open(devB, new VirtioNetOptions { SegmentationOffload = segmentationB, ChecksumOffload = true, QueueSize = queueSizeB });
        _disposables.Add(b);
        return (devA, devB, a, b);
    }

    /// <summary>Sends <paramref name="frame"/> from a buffer of <paramref name="from"/>'s large pool, flagged for TSO.</summary>
    private static void SendLarge(VirtioNetDevice from, byte[] frame, int segmentSize = Mss)
    {
        Assert.NotNull(from.LargePool);
        Assert.True(from.LargePool!.TryAllocate(out var packet));
        frame.CopyTo(packet.Room);
        packet.Length = frame.Length;
        packet.Flags = PacketFlags.TxTcpSegmentation;
        packet.SegmentSize = segmentSize;
        Assert.Equal(1, from.Transmit([packet]));
    }

    private static List<(byte[] Frame, PacketFlags Flags, int SegmentSize)> ReceiveAll(VirtioNetDevice from, VirtioNetDevice to, int expect)
    {
        var got = new List<(byte[], PacketFlags, int)>();
        var rx = new PacketBuffer[16];
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (got.Count < expect && DateTime.UtcNow < deadline)
        {
            int n = to.Receive(rx);
            for (int i = 0; i < n; i++) { got.Add((rx[i].Data.ToArray(), rx[i].Flags, rx[i].SegmentSize)); }
            PacketPool.Free(rx.AsSpan(0, n));
            from.TransmitInFlight();
            if (n == 0) { Thread.Yield(); }
        }
        // Nothing more comes.
        from.TransmitInFlight();
        Assert.Equal(0, to.Receive(rx));
        Assert.Equal(expect, got.Count);
        return got;
    }

    private static void AssertValid(byte[] frame)
    {
        Assert.True(ChecksumOffloadTests.ChecksumsRight(frame), "checksums by RFC 1071");
        var packet = Packet.ParsePacket(LinkLayers.Ethernet, frame);
        if (packet.Extract<IPv4Packet>() is { } v4) { Assert.True(v4.ValidIPChecksum, "PacketDotNet: IPv4 header checksum"); }
        Assert.True(packet.Extract<TcpPacket>()!.ValidChecksum, "PacketDotNet: TCP checksum");
    }

    [Theory]
    [InlineData(false, Payload)]
    [InlineData(true, Payload)]
    [InlineData(false, 65535 - 40)]   // the largest an IPv4 total length allows: 34 receive buffers
    public void A_64k_class_tcp_packet_crosses_whole_to_a_port_that_takes_joined_packets(bool v6, int payload)
    {
        var (devA, devB, a, b) = Open(segmentationB: true);
        var all = NetOffloads.TxChecksum | NetOffloads.RxChecksum | NetOffloads.TcpSegmentation | NetOffloads.TcpSegmentReceive;
        Assert.Equal(all, a.Offloads);
        Assert.Equal(all, b.Offloads);
        Assert.Equal(all, ((INetPort)b).Offloads);
        Assert.NotEqual(0UL, devB.DriverFeatures & VirtioFeatures.NetGuestTso4);
        var frame = Build(v6, payload);
        SendLarge(a, frame);
        var got = ReceiveAll(a, b, 1);
        var (received, flags, segmentSize) = got[0];
        Assert.Equal(frame.Length, received.Length);
        Assert.Equal(PacketFlags.TcpSegments | PacketFlags.L4ChecksumGood, flags);
        Assert.Equal(Mss, segmentSize);
        AssertValid(received);
        int headers = HeadersOf(v6);
        Assert.True(frame.AsSpan(headers).SequenceEqual(received.AsSpan(headers)), "payload intact");
        Assert.Equal(1, devA.Model.SegmentationFramesSent);
        Assert.Equal(0, devA.Model.SegmentsCut);
        Assert.Equal(0, b.RxBadSegmentHeaders);
        Assert.Equal(0, b.Stats.RxDropped);
        Assert.Empty(devA.Violations);
        Assert.Empty(devB.Violations);
        // Every buffer came back: the ones it spanned to the small pool, the joined one when the test freed it.
        Assert.Equal(0, b.JoinPool!.InUseCount);
        a.TransmitInFlight();
        Assert.Equal(0, a.LargePool!.InUseCount);
    }

    [Theory]
    [InlineData(false, (ushort)256)]
    [InlineData(true, (ushort)256)]
    [InlineData(false, (ushort)16)]   // fewer receive buffers than segments: the device waits for refills mid-packet
    public void The_device_cuts_it_into_right_segments_for_a_port_that_does_not(bool v6, ushort queueSizeB)
    {
        var (devA, _, a, b) = Open(segmentationB: false, queueSizeB: queueSizeB);
        Assert.Equal(NetOffloads.TxChecksum | NetOffloads.RxChecksum, b.Offloads);
        var frame = Build(v6);
        SendLarge(a, frame);
        int count = (Payload + Mss - 1) / Mss;
        var got = ReceiveAll(a, b, count);
        int headers = HeadersOf(v6);
        var payload = new List<byte>();
        uint firstSequence = BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(headers - 20 + 4));
        for (int i = 0; i < count; i++)
        {
            var (segment, flags, _) = got[i];
            AssertValid(segment);
            Assert.Equal(PacketFlags.L4ChecksumGood, flags);
            int carried = segment.Length - headers;
            Assert.Equal(i < count - 1 ? Mss : Payload - (count - 1) * Mss, carried);
            Assert.Equal(firstSequence + (uint)(i * Mss), BinaryPrimitives.ReadUInt32BigEndian(segment.AsSpan(headers - 20 + 4)));
            // PSH (0x08) only on the last; ACK on all.
            Assert.Equal(i < count - 1 ? 0x10 : 0x18, segment[headers - 20 + 13]);
            if (!v6) { Assert.Equal(0x1000 + i, BinaryPrimitives.ReadUInt16BigEndian(segment.AsSpan(14 + 4))); }
            var tcp = Packet.ParsePacket(LinkLayers.Ethernet, segment).Extract<TcpPacket>()!;
            Assert.Equal(carried, tcp.PayloadData.Length);
            payload.AddRange(segment.AsSpan(headers).ToArray());
        }
        Assert.True(frame.AsSpan(headers).SequenceEqual(payload.ToArray()), "the segments carry the payload in order");
        Assert.Equal(count, devA.Model.SegmentsCut);
        Assert.Equal(1, devA.Model.SegmentationFramesSent);
        Assert.Equal(0, a.TxSegmentedInSoftware);
        Assert.Empty(devA.Violations);
    }

    [Fact]
    public void A_cut_the_peer_stopped_half_way_does_not_shorten_the_next_packets_cut()
    {
        var (devA, devB, a, b) = Open(segmentationB: false, queueSizeB: 16);
        SendLarge(a, Build(v6: false));   // 16 of its 42 segments fill B's ring; the rest wait
        Assert.Equal(16, devA.Model.SegmentsCut);
        b.Dispose();                      // B's device resets: the waiting packet is dropped with the next one
        SendLarge(a, Build(v6: false));
        a.TransmitInFlight();
        using var b2 = VirtioNetDevice.Open(devB, new VirtioNetOptions { ChecksumOffload = true, QueueSize = 16 });
        var frame = Build(v6: false);
        SendLarge(a, frame);
        int count = (Payload + Mss - 1) / Mss;
        var got = ReceiveAll(a, b2, count);
        int headers = HeadersOf(false);
        Assert.True(frame.AsSpan(headers).SequenceEqual(got.SelectMany(g => g.Frame.Skip(headers)).ToArray()), "every segment of the packet, from the first");
    }

    [Fact]
    public void Without_host_tso_the_driver_cuts_the_packet_itself()
    {
        var (devA, _, a, b) = Open(segmentationB: false, configure: (devA, _) =>
            devA.OfferedFeatures &= ~(VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6));
        Assert.Equal(NetOffloads.TxChecksum | NetOffloads.RxChecksum | NetOffloads.TcpSegmentReceive, a.Offloads);
        var frame = Build(v6: false);
        SendLarge(a, frame);
        int count = (Payload + Mss - 1) / Mss;
        var got = ReceiveAll(a, b, count);
        Assert.All(got, g => AssertValid(g.Frame));
        Assert.Equal(1, a.TxSegmentedInSoftware);
        Assert.Equal(0, devA.Model.SegmentationFramesSent);
        Assert.Equal(0, devA.Model.SegmentsCut);
        int headers = HeadersOf(false);
        Assert.True(frame.AsSpan(headers).SequenceEqual(got.SelectMany(g => g.Frame.Skip(headers)).ToArray()));
        // The original went back to the large pool at once; the segments came from the small one.
        Assert.Equal(0, a.LargePool!.InUseCount);
    }

    [Fact]
    public void On_a_device_offering_no_tso_the_option_takes_no_large_pool_and_flagged_packets_are_cut_by_the_driver()
    {
        var (devA, _, a, b) = Open(segmentationB: false, configure: (devA, _) =>
            devA.OfferedFeatures &= ~(VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6 | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6));
        Assert.Equal(NetOffloads.TxChecksum | NetOffloads.RxChecksum, a.Offloads);
        Assert.Null(a.LargePool);
        // A packet of the small pool, asked to be cut at 536 bytes: four segments.
        var frame = Build(v6: true, payload: 1800);
        Assert.True(a.Pool.TryAllocate(out var packet));
        frame.CopyTo(packet.Room);
        packet.Length = frame.Length;
        packet.Flags = PacketFlags.TxTcpSegmentation;
        packet.SegmentSize = 536;
        Assert.Equal(1, a.Transmit([packet]));
        var got = ReceiveAll(a, b, 4);
        Assert.All(got, g => AssertValid(g.Frame));
        Assert.Equal([536, 536, 536, 192], got.Select(g => g.Frame.Length - HeadersOf(true)));
        Assert.Equal(1, a.TxSegmentedInSoftware);
        Assert.Equal(0, devA.Model.SegmentationFramesSent);
    }

    [Theory]
    [InlineData(true, 0)]     // no segment size: neither the device nor the driver can cut it
    [InlineData(false, 64)]   // no HOST_TSO, and 938 segments: more than the 256-entry transmit ring holds
    public void A_flagged_packet_that_cannot_be_cut_is_dropped_and_counted_and_the_port_goes_on(bool hostTso, int segmentSize)
    {
        var (devA, _, a, b) = Open(segmentationB: true, configure: (devA, _) =>
        {
            if (!hostTso) { devA.OfferedFeatures &= ~(VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6); }
        });
        SendLarge(a, Build(v6: false), segmentSize);   // taken: the caller does not retry it forever
        Assert.Equal(1, a.TxSegmentationDropped);
        Assert.Equal(0, a.LargePool!.InUseCount);
        var rx = new PacketBuffer[4];
        Assert.Equal(0, b.Receive(rx));
        Assert.Equal(0, devA.Model.SegmentationFramesSent);
        // The next one, cuttable, crosses.
        SendLarge(a, Build(v6: false));
        Assert.Equal(hostTso ? 1 : (Payload + Mss - 1) / Mss, ReceiveAll(a, b, hostTso ? 1 : (Payload + Mss - 1) / Mss).Count);
    }

    [Fact]
    public void A_packet_with_cwr_set_is_cut_by_the_driver_as_the_device_has_no_host_ecn()
    {
        var (devA, _, a, b) = Open(segmentationB: false);
        var frame = Build(v6: true, payload: 5 * Mss);
        frame[HeadersOf(true) - 20 + 13] = 0x80 | 0x10;   // CWR, ACK
        SendLarge(a, frame);
        var got = ReceiveAll(a, b, 5);
        Assert.Equal(1, a.TxSegmentedInSoftware);
        Assert.Equal(0, devA.Model.SegmentationFramesSent);
        Assert.Equal([0x90, 0x10, 0x10, 0x10, 0x10], got.Select(g => (int)g.Frame[HeadersOf(true) - 20 + 13]));
        Assert.All(got, g => AssertValid(g.Frame));
    }

    [Fact]
    public void Guest_tso_on_receive_rings_too_small_for_a_64k_packet_is_refused_at_open_with_the_sizes()
    {
        var (devA, devB) = EmulatedVirtioNet.CreatePair(queueSize: 256, transport: transport);
        _disposables.Add(devA);
        _disposables.Add(devB);
        devA.OfferedFeatures |= VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6 | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6;
        var e = Assert.Throws<VirtioNetException>(() => VirtioNetDevice.Open(devA, new VirtioNetOptions { SegmentationOffload = true, QueueSize = 32 }));
        Assert.Contains("34 receive buffers", e.Message, StringComparison.Ordinal);
        Assert.Contains("QueueSize", e.Message, StringComparison.Ordinal);
        // The device is usable afterwards, without the option.
        using var again = VirtioNetDevice.Open(devA, new VirtioNetOptions { QueueSize = 32 });
        Assert.Equal(NetOffloads.None, again.Offloads);
    }

    [Fact]
    public void Without_the_option_a_packet_spanning_buffers_is_dropped_and_counted_and_the_port_goes_on()
    {
        var (_, _, a, b) = Open(segmentationB: false);
        Assert.Null(b.LargePool);
        // Sent unflagged: one 5 KiB frame the device spreads over three receive buffers.
        Assert.True(a.LargePool!.TryAllocate(out var packet));
        var frame = Build(v6: true, payload: 5000);
        frame.CopyTo(packet.Room);
        packet.Length = frame.Length;
        Assert.Equal(1, a.Transmit([packet]));
        var deadline = DateTime.UtcNow.AddSeconds(20);
        var rx = new PacketBuffer[4];
        while (b.Stats.RxDropped == 0 && DateTime.UtcNow < deadline)
        {
            Assert.Equal(0, b.Receive(rx));
            a.TransmitInFlight();
        }
        Assert.Equal(1, b.Stats.RxDropped);
        SendLarge(a, Build(v6: true));
        Assert.Equal((Payload + Mss - 1) / Mss, ReceiveAll(a, b, (Payload + Mss - 1) / Mss).Count);
    }

    [Fact(Timeout = 120_000)]
    public async Task Scrambled_receive_headers_with_a_fixed_seed_end_in_drops_or_the_named_exception_and_leak_nothing()
    {
        // Seeded, so a failure replays: small frames, 5,000-byte frames that span receive buffers and 60,000-byte TSO
        // packets cross to a port whose device lies in every header (num_buffers, gso and checksum fields).
        var ct = TestContext.Current.CancellationToken;
        await Task.Run(() =>
        {
            var (_, devB, a, b) = Open(segmentationB: true);
            devB.ViolationsExpected = true;
            devB.Model.HostileSeed = 20;
            devB.Model.HostileContinuously = true;
            devB.Model.Hostile = VirtioNetHostileMode.ScrambledReceiveHeaders;
            var random = new Random(21);
            int steps = transport == VirtioTransport.SocketMessages ? 12 : 40, violations = 0;
            long received = 0;
            var rx = new PacketBuffer[16];
            for (int step = 0; step < steps; step++)
            {
                ct.ThrowIfCancellationRequested();
                try
                {
                    switch (random.Next(3))
                    {
                        case 0:
                            var small = ChecksumOffloadTests.Build(ChecksumFrame.TcpIPv4).Frame;
                            var tx = new PacketBuffer[8];
                            Assert.Equal(8, a.Pool.Allocate(tx));
                            foreach (var p in tx) { small.CopyTo(p.Room); p.Length = small.Length; }
                            Assert.Equal(8, a.Transmit(tx));
                            break;
                        case 1:
                            Assert.True(a.LargePool!.TryAllocate(out var big));
                            var frame = Build(v6: true, payload: 5000);
                            frame.CopyTo(big.Room);
                            big.Length = frame.Length;
                            Assert.Equal(1, a.Transmit([big]));
                            break;
                        default:
                            SendLarge(a, Build(v6: random.Next(2) == 0));
                            break;
                    }
                    for (int round = 0; round < 50; round++)
                    {
                        int n = b.Receive(rx);
                        for (int i = 0; i < n; i++)
                        {
                            // Whatever arrives fits its buffer, and a joined packet says its segment size.
                            Assert.InRange(rx[i].Length, 0, rx[i].Pool.DataRoom);
                            if ((rx[i].Flags & PacketFlags.TcpSegments) != 0) { Assert.NotEqual(0, rx[i].SegmentSize); }
                        }
                        received += n;
                        PacketPool.Free(rx.AsSpan(0, n));
                        a.TransmitInFlight();
                        if (n == 0 && round > 5) { break; }
                    }
                }
                catch (DeviceProtocolViolationException e)
                {
                    violations++;
                    Assert.Equal(devB.Address, e.Device);
                    b.Reset();
                }
            }
            devB.Model.Hostile = VirtioNetHostileMode.None;
            TestContext.Current.SendDiagnosticMessage(
                $"{transport}: {devB.Model.HostileActs} scrambled headers, {received} packets received, {b.Stats.RxDropped} dropped ({b.RxBadSegmentHeaders} bad segment headers, {b.RxBadChecksumHeaders} bad checksum headers), {violations} violations");
            Assert.True(devB.Model.HostileActs > 0);
            Assert.True(b.Stats.RxDropped > 0, "nothing dropped under scrambled headers");
            b.Reset();
            a.TransmitInFlight();
            // After a reset, with every received packet freed: no joined buffer is held, and the small pool holds
            // exactly the receive ring's posted buffers.
            Assert.Equal(0, b.JoinPool!.InUseCount);
            Assert.Equal(b.RxQueueSize, b.Pool.InUseCount);
            Assert.Equal(0, a.LargePool!.InUseCount);
            // And the port works again.
            var clean = Build(v6: false);
            SendLarge(a, clean);
            var got = ReceiveAll(a, b, 1);
            AssertValid(got[0].Frame);
            Assert.True(clean.AsSpan(HeadersOf(false)).SequenceEqual(got[0].Frame.AsSpan(HeadersOf(false))));
        }, ct);
    }

    [Fact]
    public void A_join_the_device_left_waiting_is_given_back_on_reset_and_the_next_packet_is_not_taken_for_its_tail()
    {
        var (_, devB, a, b) = Open(segmentationB: true);
        devB.Model.Hostile = VirtioNetHostileMode.NumBuffersOneTooMany;
        Assert.True(a.LargePool!.TryAllocate(out var big));
        var frame = Build(v6: true, payload: 5000);
        frame.CopyTo(big.Room);
        big.Length = frame.Length;
        Assert.Equal(1, a.Transmit([big]));
        var rx = new PacketBuffer[4];
        for (int i = 0; i < 20 && devB.Model.HostileActs == 0; i++) { Assert.Equal(0, b.Receive(rx)); a.TransmitInFlight(); }
        Assert.Equal(1, devB.Model.HostileActs);
        Assert.Equal(0, b.Receive(rx));            // three buffers in, a fourth awaited
        Assert.Equal(1, b.JoinPool!.InUseCount);
        b.Reset();
        Assert.Equal(0, b.JoinPool.InUseCount);
        var clean = Build(v6: false);
        SendLarge(a, clean);
        var got = ReceiveAll(a, b, 1);
        Assert.Equal(clean.Length, got[0].Frame.Length);
        AssertValid(got[0].Frame);
    }

    [Fact]
    public void A_segmentation_the_driver_did_not_negotiate_is_dropped_and_counted()
    {
        var (_, devB, a, b) = Open(segmentationB: false);
        devB.Model.Hostile = VirtioNetHostileMode.UnnegotiatedSegmentation;
        devB.ViolationsExpected = true;
        var small = ChecksumOffloadTests.Build(ChecksumFrame.TcpIPv4).Frame;
        var tx = new PacketBuffer[3];
        Assert.Equal(3, a.Pool.Allocate(tx));
        foreach (var p in tx)
        {
            small.CopyTo(p.Room);
            p.Length = small.Length;
            p.Flags = PacketFlags.TxL4Checksum | PacketFlags.TxIpChecksum;
        }
        Assert.Equal(3, a.Transmit(tx));
        var got = ReceiveAll(a, b, 2);
        Assert.Equal(1, devB.Model.HostileActs);
        Assert.Equal(1, b.RxBadSegmentHeaders);
        Assert.Equal(1, b.Stats.RxDropped);
        Assert.All(got, g => AssertValid(g.Frame));
    }
}
