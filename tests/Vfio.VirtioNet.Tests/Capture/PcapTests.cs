using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;

namespace Vfio.VirtioNet.Tests.Capture;

/// <summary>
/// <see cref="PcapWriter"/> and <see cref="PacketCapture"/>: the file header and records checked field by field against
/// pcap-savefile(5), frames built and parsed back with PacketDotNet, the bounded queue's drops, and tcpdump reading
/// the files (tcpdump is required: ./run test installs it).
/// </summary>
public sealed class PcapTests : IDisposable
{
    // 2026-12-06 23:00:00 UTC plus 0.1234567 s (DateTimeOffset's 100-ns ticks).
    private static readonly DateTimeOffset When = new DateTimeOffset(2026, 12, 6, 23, 0, 0, TimeSpan.Zero).AddTicks(1_234_567);
    private const uint WhenSeconds = 1_796_598_000;
    private static readonly PhysicalAddress MacA = PhysicalAddress.Parse("52-54-00-12-34-56");
    private static readonly PhysicalAddress MacB = PhysicalAddress.Parse("52-54-00-12-34-57");
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("vfio-pcap-");

    public void Dispose() => _dir.Delete(recursive: true);

    /// <summary>An Ethernet/IPv6/UDP frame from fe80::2 port 5000 to fe80::1 port 9 with <paramref name="payload"/> bytes.</summary>
    internal static byte[] UdpFrame(int payload, byte fill = 0x5a)
    {
        var udp = new UdpPacket(5000, 9) { PayloadData = Enumerable.Repeat(fill, payload).ToArray() };
        var ip = new IPv6Packet(IPAddress.Parse("fe80::2"), IPAddress.Parse("fe80::1")) { HopLimit = 64, PayloadPacket = udp };
        var eth = new EthernetPacket(MacB, MacA, EthernetType.IPv6) { PayloadPacket = ip };
        udp.UpdateUdpChecksum();
        eth.UpdateCalculatedValues();
        return eth.Bytes;
    }

    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    [Theory]
    [InlineData(PcapTimestampResolution.Microseconds, 0xA1B2C3D4u)]
    [InlineData(PcapTimestampResolution.Nanoseconds, 0xA1B23C4Du)]
    public void File_header_fields(PcapTimestampResolution resolution, uint magic)
    {
        var ms = new MemoryStream();
        using (new PcapWriter(ms, snapLength: 128, resolution, leaveOpen: true)) { }
        byte[] h = ms.ToArray();
        Assert.Equal(PcapWriter.FileHeaderSize, h.Length);
        Assert.Equal(magic, BinaryPrimitives.ReadUInt32LittleEndian(h));
        Assert.Equal([(byte)magic, (byte)(magic >> 8), (byte)(magic >> 16), (byte)(magic >> 24)], h[0..4]);
        Assert.Equal([2, 0, 4, 0], h[4..8]);              // version 2.4
        Assert.Equal(new byte[8], h[8..16]);              // thiszone, sigfigs
        Assert.Equal([128, 0, 0, 0], h[16..20]);          // snaplen
        Assert.Equal([1, 0, 0, 0], h[20..24]);            // LINKTYPE_ETHERNET
    }

    [Theory]
    [InlineData(PcapTimestampResolution.Microseconds, 123_456u)]
    [InlineData(PcapTimestampResolution.Nanoseconds, 123_456_700u)]
    public void Record_fields_and_a_frame_cut_to_the_snap_length(PcapTimestampResolution resolution, uint fraction)
    {
        byte[] small = UdpFrame(10), large = UdpFrame(200);
        var ms = new MemoryStream();
        using (var w = new PcapWriter(ms, snapLength: 100, resolution, leaveOpen: true))
        {
            w.Write(When, small);
            w.Write(When, large);
            Assert.Equal(2, w.Records);
        }
        byte[] f = ms.ToArray();
        int at = PcapWriter.FileHeaderSize;
        Assert.Equal(WhenSeconds, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at)));
        Assert.Equal(fraction, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at + 4)));
        Assert.Equal((uint)small.Length, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at + 8)));
        Assert.Equal((uint)small.Length, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at + 12)));
        Assert.Equal(small, f[(at + 16)..(at + 16 + small.Length)]);
        at += PcapWriter.RecordHeaderSize + small.Length;
        Assert.Equal(100u, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at + 8)));          // incl_len: the snap
        Assert.Equal((uint)large.Length, BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(at + 12))); // orig_len: the frame
        Assert.Equal(large[..100], f[(at + 16)..(at + 116)]);
        Assert.Equal(at + 116, f.Length);
    }

    [Fact]
    public void Capture_writes_every_frame_and_they_parse_back()
    {
        string path = Path.Combine(_dir.FullName, "a.pcap");
        var frames = Enumerable.Range(0, 50).Select(i => UdpFrame(10 + i, (byte)i)).ToArray();
        PacketCaptureStats stats;
        using (var capture = PacketCapture.ToFile(path, new PacketCaptureOptions { TimeProvider = new FixedTime(When) }))
        {
            foreach (var frame in frames) { capture.Add(frame); }
            stats = capture.Complete();
        }
        Assert.Equal(new PacketCaptureStats(50, 0, 50), stats);
        var records = ReadRecords(File.ReadAllBytes(path));
        Assert.Equal(50, records.Count);
        for (int i = 0; i < frames.Length; i++)
        {
            Assert.Equal(frames[i], records[i]);
            var udp = Packet.ParsePacket(LinkLayers.Ethernet, records[i]).Extract<UdpPacket>();
            Assert.NotNull(udp);
            Assert.Equal(9, udp.DestinationPort);
            Assert.Equal(10 + i, udp.PayloadData.Length);
            Assert.True(udp.ValidUdpChecksum);
        }
    }

    [Fact]
    public void A_full_queue_drops_and_counts_instead_of_waiting()
    {
        var stream = new GatedStream();
        using var capture = new PacketCapture(stream, new PacketCaptureOptions { QueueFrames = 4 });
        stream.Stall(); // the header is written; every later write waits
        byte[] frame = UdpFrame(10);
        for (int i = 0; i < 10; i++) { capture.Add(frame); }
        // The writer holds the first frame in a write that cannot finish: its slot stays taken, so four fit.
        Assert.Equal(new PacketCaptureStats(4, 6, 0), capture.Stats);
        stream.Resume();
        var stats = capture.Complete();
        Assert.Equal(new PacketCaptureStats(4, 6, 4), stats);
        Assert.Equal(4, ReadRecords(stream.ToArray()).Count);
    }

    [Fact]
    public void MaxFrames_stops_taking_frames_without_counting_drops()
    {
        var ms = new MemoryStream();
        var capture = new PacketCapture(ms, new PacketCaptureOptions { MaxFrames = 3 });
        byte[] frame = UdpFrame(10);
        for (int i = 0; i < 10 && !capture.IsFull; i++) { capture.Add(frame); }
        Assert.True(capture.IsFull);
        capture.Add(frame);
        Assert.Equal(new PacketCaptureStats(3, 0, 3), capture.Complete());
    }

    [Fact]
    public void A_failed_write_is_reported_by_Complete_and_later_frames_are_dropped()
    {
        var stream = new FailingStream();
        var capture = new PacketCapture(stream);
        stream.Fail = true;
        capture.Add(UdpFrame(10));
        var e = Assert.Throws<PacketCaptureException>(() => capture.Complete());
        Assert.Contains("disk full", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, capture.Stats.Dropped);
        capture.Dispose();
    }

    [Fact]
    public void A_file_that_cannot_be_created_is_one_clear_error()
    {
        var e = Assert.Throws<PacketCaptureException>(() => PacketCapture.ToFile(Path.Combine(_dir.FullName, "missing", "x.pcap")));
        Assert.Contains("cannot write the capture file", e.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<VfioException>(e);
    }

    [Theory]
    [InlineData(PcapTimestampResolution.Microseconds, "micro", "1796598000.123456")]
    [InlineData(PcapTimestampResolution.Nanoseconds, "nano", "1796598000.123456700")]
    public void Tcpdump_reads_the_file_back(PcapTimestampResolution resolution, string precision, string stamp)
    {
        string path = Path.Combine(_dir.FullName, "t.pcap");
        using (var capture = PacketCapture.ToFile(path, new PacketCaptureOptions { TimeProvider = new FixedTime(When), Resolution = resolution }))
        {
            for (int i = 0; i < 7; i++) { capture.Add(UdpFrame(10)); }
            capture.Complete();
        }
        var (exit, output) = Tcpdump(path, precision);
        Assert.True(exit == 0, output);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith(stamp, StringComparison.Ordinal)).ToArray();
        Assert.Equal(7, lines.Length);
        Assert.All(lines, l => Assert.Contains("fe80::2.5000 > fe80::1.9: UDP, length 10", l, StringComparison.Ordinal));
    }

    /// <summary>Runs <c>tcpdump -r</c> (a missing tcpdump fails the test: ./run test installs it).</summary>
    internal static (int ExitCode, string Output) Tcpdump(string path, string precision = "micro", string filter = "")
    {
        var psi = new ProcessStartInfo("tcpdump") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-r", path, "-nn", "-tt", $"--time-stamp-precision={precision}" }) { psi.ArgumentList.Add(a); }
        if (filter.Length > 0) { psi.ArgumentList.Add(filter); }
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("tcpdump is not installed (apt-get install tcpdump; ./run test installs it)", e);
        }
        using (p)
        {
            var err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output + err.Result);
        }
    }

    /// <summary>The frames of a pcap file, with its header and record headers checked on the way.</summary>
    internal static List<byte[]> ReadRecords(byte[] file)
    {
        Assert.True(file.Length >= PcapWriter.FileHeaderSize);
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(file);
        Assert.True(magic is PcapWriter.MicrosecondMagic or PcapWriter.NanosecondMagic, $"magic 0x{magic:x8}");
        uint snap = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(16));
        var frames = new List<byte[]>();
        int at = PcapWriter.FileHeaderSize;
        while (at < file.Length)
        {
            int incl = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 8));
            int orig = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 12));
            Assert.True(incl <= orig && incl <= snap, $"record at {at}: incl {incl}, orig {orig}, snap {snap}");
            frames.Add(file[(at + 16)..(at + 16 + incl)]);
            at += 16 + incl;
        }
        Assert.Equal(file.Length, at);
        return frames;
    }

    /// <summary>A memory stream whose writes wait while the gate is closed (a disk that stalls).</summary>
    private sealed class GatedStream : MemoryStream
    {
        private readonly ManualResetEventSlim _gate = new(true);

        public void Stall() => _gate.Reset();

        public void Resume() => _gate.Set();

        // MemoryStream hands span writes of a derived class to this overload.
        public override void Write(byte[] buffer, int offset, int count)
        {
            _gate.Wait();
            base.Write(buffer, offset, count);
        }

        protected override void Dispose(bool disposing) { }
    }

    /// <summary>A stream that fails every write once told to (a full disk).</summary>
    private sealed class FailingStream : MemoryStream
    {
        public bool Fail { get; set; }

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (Fail) { throw new IOException("disk full"); }
            base.Write(buffer, offset, count);
        }
    }
}
