using Vfio.Net;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using Vfio.Cli.Tools.Net;
using Vfio.Host;
using Vfio.Igb;
using Vfio.Kernel;
using Vfio.VirtioNet;

namespace Vfio.E2E.Tests;

/// <summary>
/// The userspace 82576 driver against QEMU's igb model: two ports on one hub with no host-side netdev (lab/lab.sh's igb
/// configuration, on QEMU 10), so what one port sends the other receives. Trait lab=igb: the igb guest runs it in every
/// lab e2e run, and there a missing port fails the tests (Lab.Igb0 throws), never skips.
/// Run alone: lab/lab.sh run igb --timeout 900 -- dotnet
/// tests/Vfio.E2E.Tests/bin/Release/net10.0/Vfio.E2E.Tests.dll -trait lab=igb (after binding both ports to vfio-pci,
/// which the tests also do).
/// </summary>
[Trait("lab", "igb")]
[Collection("igb ports")]
public sealed class IgbTests : IDisposable
{
    private static readonly object s_bindLock = new();
    private readonly List<IDisposable> _owned = [];

    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) { _owned[i].Dispose(); }
    }

    private static PciAddress Bound(string bdf)
    {
        lock (s_bindLock)
        {
            var address = PciAddress.Parse(bdf);
            var host = new PciHost();
            if (host.GetDevice(address).Driver != PciHost.VfioPciDriver) { host.BindToVfio(address); }
            return address;
        }
    }

    private IgbDevice OpenPort(string bdf, IgbOptions options)
    {
        var device = VfioDevice.Open(Bound(bdf), new VfioOpenOptions { AllowNoIommu = true });
        _owned.Add(device);
        var port = IgbDevice.Open(device, options);
        _owned.Add(port);
        return port;
    }

    private (IgbDevice A, IgbDevice B) OpenBoth(int pairsOnB = 1) =>
        (OpenPort(Lab.Igb0, new IgbOptions { RingSize = 256 }), OpenPort(Lab.Igb1, new IgbOptions { RingSize = 256, QueuePairs = pairsOnB }));

    [Fact]
    public void OpensBothPortsWithTheirMacsAndTheLinkUp()
    {
        var (a, b) = OpenBoth();
        Assert.Equal("525400000101", a.MacAddress.ToString());
        Assert.Equal("525400000102", b.MacAddress.ToString());
        Assert.True(a.IsLinkUp, "port 0 link");
        Assert.True(b.IsLinkUp, "port 1 link");
        Assert.Equal(1000, a.LinkSpeedMbps);
        Assert.True(a.IsFullDuplex);
    }

    [Fact]
    public void FramesCrossIntactAndTheStatisticsRegistersAgree()
    {
        var (a, b) = OpenBoth();
        a.ReadHardwareStats();
        b.ReadHardwareStats();
        const int Count = 1000;   // almost four times the ring: every index wraps
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        var tx = new PacketBuffer[32];
        var rx = new PacketBuffer[32];
        var seen = new bool[Count];
        long sent = 0, received = 0, octets = 0;
        static int SizeOf(long i) => (int)(60 + (i * 37) % (TestFrames.MaxSize - 60 + 1));
        var clock = Stopwatch.StartNew();
        while (received < Count)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), $"{received} of {Count} frames arrived in 120 s ({sent} sent)");
            if (sent < Count)
            {
                int n = a.Pool.Allocate(tx.AsSpan(0, (int)Math.Min(tx.Length, Count - sent)));
                for (int i = 0; i < n; i++)
                {
                    int size = SizeOf(sent + i);
                    TestFrames.Write(tx[i].Room, size, (ulong)(sent + i), dst, src);
                    tx[i].Length = size;
                }
                int taken = a.Transmit(tx.AsSpan(0, n));
                for (int i = 0; i < taken; i++) { octets += SizeOf(sent + i) + 4; }
                PacketPool.Free(tx.AsSpan(taken, n - taken));
                sent += taken;
            }
            int got = b.Receive(rx);
            for (int i = 0; i < got; i++)
            {
                Assert.True(TestFrames.TryRead(rx[i].Data, out ulong seq), $"a frame of {rx[i].Length} bytes is damaged (after {received} good ones)");
                Assert.True(seq < Count, $"frame {seq} was never sent");
                Assert.False(seen[seq], $"frame {seq} arrived twice");
                Assert.Equal(SizeOf((long)seq), rx[i].Length);
                seen[seq] = true;
                received++;
                rx[i].Free();
            }
        }
        Thread.Sleep(50);
        Assert.Equal(0, b.Receive(rx));
        Assert.Equal(0, a.TransmitInFlight());
        Assert.Equal(Count, a.Stats.TxPackets);
        Assert.Equal(Count, b.Stats.RxPackets);
        var sentStats = a.ReadHardwareStats();
        var receivedStats = b.ReadHardwareStats();
        Assert.Equal(Count, sentStats.GoodPacketsTransmitted);
        Assert.Equal(Count, sentStats.TotalPacketsTransmitted);
        Assert.Equal(Count, receivedStats.GoodPacketsReceived);
        Assert.Equal(Count, receivedStats.TotalPacketsReceived);
        Assert.Equal(octets, sentStats.GoodOctetsTransmitted);     // §8.19: octets with the 4 CRC bytes
        Assert.Equal(octets, receivedStats.GoodOctetsReceived);
        Assert.Equal(0, receivedStats.CrcErrors + receivedStats.MissedPackets);
        Assert.Equal(0, b.Stats.RxErrors);
    }

    [Fact]
    public void RssWithTwoQueuesSpreadsFlowsAsTheToeplitzHashAndTheTablePredict()
    {
        var (a, b) = OpenBoth(pairsOnB: 2);
        Assert.Equal(2, b.QueuePairCount);
        var rss = b.Rss!;
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        var perQueue = new int[2];
        const int Flows = 16, PerFlow = 4;
        var rx = new PacketBuffer[8];
        var meta = new IgbRxMetadata[8];
        for (int flow = 0; flow < Flows; flow++)
        {
            ushort sport = (ushort)(40000 + flow * 7919 % 20000);
            uint expectedHash = ToeplitzHash.ComputeFlow(IgbRssConfiguration.VerificationKey, IPAddress.Parse("169.254.1.1"), IPAddress.Parse("169.254.1.2"), sport, 80);
            int expectedQueue = rss.QueueFor(expectedHash);
            for (int k = 0; k < PerFlow; k++)
            {
                Assert.True(a.Pool.TryAllocate(out var p));
                int length = Frames.Tcp(p.Room, dst, src, "169.254.1.1", "169.254.1.2", sport, 80, payload: 40 + k);
                p.Length = length;
                Assert.Equal(1, a.Transmit([p]));
            }
            int got = 0;
            var clock = Stopwatch.StartNew();
            while (got < PerFlow)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"flow {flow}: {got} of {PerFlow} frames arrived on queue {expectedQueue}");
                int n = b.Receive(rx, meta, expectedQueue);
                for (int i = 0; i < n; i++)
                {
                    Assert.Equal(expectedHash, meta[i].RssHash);          // QEMU's hash is ours
                    Assert.Equal(1, meta[i].RssType);                     // TCP/IPv4
                    Assert.True((meta[i].Flags & IgbRxFlags.IpChecksumChecked) != 0 && (meta[i].Flags & IgbRxFlags.L4ChecksumChecked) != 0, $"flags {meta[i].Flags}");
                    Assert.False(meta[i].HasChecksumError, $"flags {meta[i].Flags}");
                    rx[i].Free();
                }
                got += n;
                Assert.Equal(0, b.Receive(rx, 1 - expectedQueue));      // nothing on the other queue
            }
            perQueue[expectedQueue] += got;
        }
        Assert.True(perQueue[0] > 0 && perQueue[1] > 0, $"queue 0 got {perQueue[0]}, queue 1 {perQueue[1]}");
    }

    [Fact]
    public void TransmitChecksumOffloadFillsHeadersTheReceiverReportsGood()
    {
        var (a, b) = OpenBoth();
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        const int Count = 8;
        for (int i = 0; i < Count; i++)
        {
            Assert.True(a.Pool.TryAllocate(out var p));
            int length = Frames.Tcp(p.Room, dst, src, "169.254.2.1", "169.254.2.2", (ushort)(1000 + i), 443, payload: 100 + i, checksums: false);
            p.Length = length;
            Assert.Equal(1, a.Transmit([p], 0, new IgbTxOffload(IgbTxChecksum.Ipv4 | IgbTxChecksum.Tcp)));
        }
        var rx = new PacketBuffer[Count];
        var meta = new IgbRxMetadata[Count];
        int got = 0;
        var clock = Stopwatch.StartNew();
        while (got < Count)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"{got} of {Count} offloaded frames arrived");
            got += b.Receive(rx.AsSpan(got), meta.AsSpan(got));
        }
        for (int i = 0; i < Count; i++)
        {
            var frame = rx[i].Data;
            Assert.True(Frames.ChecksumsValid(frame), $"frame {i}: the checksums the device inserted do not verify");
            Assert.True((meta[i].Flags & (IgbRxFlags.IpChecksumChecked | IgbRxFlags.L4ChecksumChecked)) == (IgbRxFlags.IpChecksumChecked | IgbRxFlags.L4ChecksumChecked), $"flags {meta[i].Flags}");
            Assert.False(meta[i].HasChecksumError, $"flags {meta[i].Flags}");
            rx[i].Free();
        }
    }

    [Fact]
    public void TrafficFlowsAgainAfterAPortReset()
    {
        var (a, b) = OpenBoth();
        b.Reset();
        a.Reset();
        Assert.True(a.IsLinkUp && b.IsLinkUp);
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        Assert.True(a.Pool.TryAllocate(out var p));
        TestFrames.Write(p.Room, 200, 7, dst, src);
        p.Length = 200;
        Assert.Equal(1, a.Transmit([p]));
        var rx = new PacketBuffer[1];
        var clock = Stopwatch.StartNew();
        while (b.Receive(rx) == 0) { Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "no frame after the reset"); }
        Assert.True(TestFrames.TryRead(rx[0].Data, out ulong seq) && seq == 7);
        rx[0].Free();
    }

    [Fact]
    public void AReceiverInMsixModeSleepsOnItsVectorAndCountsEveryFrame()
    {
        var a = OpenPort(Lab.Igb0, new IgbOptions { RingSize = 256 });
        var b = OpenPort(Lab.Igb1, new IgbOptions { RingSize = 256, CompletionMode = IgbCompletionMode.Interrupt });
        Assert.Equal(IgbCompletionMode.Interrupt, b.CompletionMode);
        const int Count = 2000;
        var seen = new bool[Count];
        int received = 0, damaged = 0, timeouts = 0;
        var receiver = new Thread(() =>
        {
            var rx = new PacketBuffer[32];
            while (Volatile.Read(ref received) < Count && timeouts < 30)
            {
                if (!b.WaitForReceive(0, TimeSpan.FromSeconds(1))) { timeouts++; continue; }
                int n = b.Receive(rx);
                for (int i = 0; i < n; i++)
                {
                    if (TestFrames.TryRead(rx[i].Data, out ulong seq) && seq < Count && !seen[seq]) { seen[seq] = true; }
                    else { damaged++; }
                    rx[i].Free();
                }
                Interlocked.Add(ref received, n);
            }
        }) { IsBackground = true, Name = "igb msix receiver" };
        receiver.Start();
        Thread.Sleep(200);   // let the receiver arm its vector and sleep before the first frame
        var dst = b.MacAddress.GetAddressBytes();
        var src = a.MacAddress.GetAddressBytes();
        var tx = new PacketBuffer[32];
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (sent < Count)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{sent} of {Count} sent in 60 s");
            // Bursts below the receive ring, so the receiver drains and sleeps again between them.
            int n = a.Pool.Allocate(tx.AsSpan(0, (int)Math.Min(tx.Length, Count - sent)));
            for (int i = 0; i < n; i++)
            {
                TestFrames.Write(tx[i].Room, 128, (ulong)(sent + i), dst, src);
                tx[i].Length = 128;
            }
            int taken = a.Transmit(tx.AsSpan(0, n));
            PacketPool.Free(tx.AsSpan(taken, n - taken));
            sent += taken;
            // Never more unread frames than B's ring holds: an Ethernet port drops what finds no descriptor (QEMU counts
            // it in RNBC), and on a busy host a sleeping receiver wakes late (1871 of 2000 arrived with fixed 5 ms pauses).
            while (sent - Volatile.Read(ref received) >= 192 && receiver.IsAlive)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{Volatile.Read(ref received)} of {sent} received in 60 s");
                Thread.Sleep(1);
            }
        }
        Assert.True(receiver.Join(TimeSpan.FromSeconds(60)), $"the receiver got {Volatile.Read(ref received)} of {Count}");
        Assert.Equal(Count, received);
        Assert.Equal(0, damaged);
        Assert.All(seen, Assert.True);
        Assert.True(b.InterruptWakeups > 0, "the receiver never woke from its MSI-X vector");
        Assert.Equal(0, b.Stats.RxErrors);
    }

    [Fact]
    public void RemovingAPortUnderTrafficStopsItWithDeviceReleasedAndTheOtherPortGoesOn()
    {
        var a = OpenPort(Lab.Igb0, new IgbOptions { RingSize = 256 });
        var address = PciAddress.Parse(Lab.Igb1);
        var device = VfioDevice.Open(Bound(Lab.Igb1), new VfioOpenOptions { AllowNoIommu = true });
        var b = IgbDevice.Open(device, new IgbOptions { RingSize = 256 });
        try
        {
            var dst = b.MacAddress.GetAddressBytes();
            var src = a.MacAddress.GetAddressBytes();
            long received = 0;
            Exception? error = null;
            bool ownerDone = false;
            // The application's thread: receives on B until the driver says the host took B back, then does what an
            // owner does, disposes the port and the device; only that close lets the kernel's removal finish.
            var owner = new Thread(() =>
            {
                var rx = new PacketBuffer[32];
                try
                {
                    while (true)
                    {
                        int n = b.Receive(rx);
                        PacketPool.Free(rx.AsSpan(0, n));
                        Interlocked.Add(ref received, n);
                    }
                }
                catch (Exception e) { error = e; }
                b.Dispose();
                device.Dispose();
                Volatile.Write(ref ownerDone, true);
            }) { IsBackground = true, Name = "igb owner" };
            owner.Start();
            var tx = new PacketBuffer[32];
            var clock = Stopwatch.StartNew();
            void Send()
            {
                int n = a.Pool.Allocate(tx);
                for (int i = 0; i < n; i++)
                {
                    TestFrames.Write(tx[i].Room, 128, (ulong)i, dst, src);
                    tx[i].Length = 128;
                }
                int taken = a.Transmit(tx.AsSpan(0, n));
                PacketPool.Free(tx.AsSpan(taken, n - taken));
            }
            while (Interlocked.Read(ref received) < 1000)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60) && error is null, $"{Interlocked.Read(ref received)} frames in 60 s; {error}");
                Send();
            }

            byte[] one = "1"u8.ToArray();
            using var removeFile = File.OpenHandle(Path.Combine(Lab.DeviceDir(address.ToString()), "remove"), FileMode.Open, FileAccess.Write);
            var removeTime = Stopwatch.StartNew();
            var remover = new Thread(() => { RandomAccess.Write(removeFile, one, 0); removeTime.Stop(); }) { IsBackground = true, Name = "sysfs remove" };
            remover.Start();
            // A keeps sending while B goes: its bursts must not notice.
            while (!remover.Join(0))
            {
                Assert.True(removeTime.Elapsed < TimeSpan.FromSeconds(60), "the sysfs remove never returned: the port was not released");
                Send();
                Thread.Sleep(1);
            }
            Assert.True(owner.Join(TimeSpan.FromSeconds(30)) && ownerDone);
            Lab.Report($"igb hot-unplug {Lab.Config}: sysfs remove blocked {removeTime.Elapsed.TotalMilliseconds:F0} ms; {received} frames before");
            var released = Assert.IsType<DeviceReleasedException>(error);
            Assert.Equal(address, released.Device);
            Assert.True(removeTime.Elapsed < TimeSpan.FromSeconds(5), $"the removal took {removeTime.Elapsed.TotalMilliseconds:F0} ms");
            Assert.False(Directory.Exists(Lab.DeviceDir(address.ToString())));
            // The released port's rings gave every buffer back in its Dispose; the other port goes on.
            Assert.Equal(0, b.Pool.InUseCount);
            for (int i = 0; i < 10; i++) { Send(); }
            Assert.Equal(0, a.Stats.RxErrors);
        }
        finally
        {
            b.Dispose();
            device.Dispose();
            HotUnplugTests.Rescan(address, driver: false);
        }
    }

    /// <summary>IPv4/TCP test frames with real checksums (RFC 791, RFC 793 with the pseudo header).</summary>
    internal static class Frames
    {
        public static int Tcp(Span<byte> f, byte[] dstMac, byte[] srcMac, string srcIp, string dstIp, ushort sport, ushort dport, int payload, bool checksums = true)
        {
            int length = 14 + 20 + 20 + payload;
            f[..length].Clear();
            dstMac.CopyTo(f);
            srcMac.CopyTo(f[6..]);
            BinaryPrimitives.WriteUInt16BigEndian(f[12..], 0x0800);
            var ip = f.Slice(14, 20);
            ip[0] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(20 + 20 + payload));
            ip[8] = 64;
            ip[9] = 6;
            IPAddress.Parse(srcIp).TryWriteBytes(ip[12..16], out _);
            IPAddress.Parse(dstIp).TryWriteBytes(ip[16..20], out _);
            var tcp = f.Slice(34, 20 + payload);
            BinaryPrimitives.WriteUInt16BigEndian(tcp, sport);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], dport);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], 1);
            tcp[12] = 5 << 4;
            tcp[13] = 0x18;   // PSH ACK
            BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 65535);
            for (int i = 0; i < payload; i++) { tcp[20 + i] = (byte)(i * 7 + sport); }
            if (checksums)
            {
                BinaryPrimitives.WriteUInt16BigEndian(ip[10..], Fold(Sum(ip)));
                BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], Fold(Sum(tcp) + PseudoHeader(ip, tcp.Length)));
            }
            else
            {
                // Offload: the IP checksum field zero, the TCP one seeded with the pseudo header's sum (as Linux does).
                BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)~Fold(PseudoHeader(ip, tcp.Length)));
            }
            return length;
        }

        public static bool ChecksumsValid(ReadOnlySpan<byte> f)
        {
            var ip = f.Slice(14, 20);
            int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            var tcp = f.Slice(34, total - 20);
            return Fold(Sum(ip)) == 0 && Fold(Sum(tcp) + PseudoHeader(ip, tcp.Length)) == 0;
        }

        private static uint PseudoHeader(ReadOnlySpan<byte> ip, int l4Length) =>
            Sum(ip[12..20]) + 6u + (uint)l4Length;

        /// <summary>The RFC 1071 sum of 16-bit big-endian words (an odd last byte padded with zero).</summary>
        public static uint Sum(ReadOnlySpan<byte> data)
        {
            uint sum = 0;
            for (int i = 0; i + 1 < data.Length; i += 2) { sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]); }
            if (data.Length % 2 == 1) { sum += (uint)data[^1] << 8; }
            return sum;
        }

        /// <summary>The one's complement of the folded sum: the checksum to store, or 0 when the data verifies.</summary>
        public static ushort Fold(uint sum)
        {
            while (sum > 0xFFFF) { sum = (sum & 0xFFFF) + (sum >> 16); }
            return (ushort)~sum;
        }
    }
}
