using System.Buffers.Binary;

namespace Vfio.VirtioNet;

/// <summary>How finely a pcap file's record timestamps divide the second (the file's magic number says which).</summary>
public enum PcapTimestampResolution
{
    /// <summary>Microseconds: magic 0xA1B2C3D4, what every reader knows.</summary>
    Microseconds,

    /// <summary>Nanoseconds: magic 0xA1B23C4D (libpcap 1.5+, tcpdump --nano).</summary>
    Nanoseconds,
}

/// <summary>
/// Writes the classic libpcap capture file format (pcap-savefile(5); draft-ietf-opsawg-pcap §4 file header, §5
/// packet record) with link type LINKTYPE_ETHERNET: a 24-byte file header, then for each frame a 16-byte record header
/// and the first <see cref="SnapLength"/> bytes of the frame. Fields are written little-endian; readers tell the byte
/// order from the magic number. Not thread-safe: one writer per file.
/// </summary>
public sealed class PcapWriter : IDisposable
{
    /// <summary>The file header's magic for microsecond timestamps.</summary>
    public const uint MicrosecondMagic = 0xA1B2C3D4;

    /// <summary>The file header's magic for nanosecond timestamps.</summary>
    public const uint NanosecondMagic = 0xA1B23C4D;

    /// <summary>LINKTYPE_ETHERNET (1): each record is an Ethernet frame starting at the destination MAC, without the FCS.</summary>
    public const uint LinkTypeEthernet = 1;

    /// <summary>Bytes of the file header.</summary>
    public const int FileHeaderSize = 24;

    /// <summary>Bytes of each record's header.</summary>
    public const int RecordHeaderSize = 16;

    /// <summary>The largest snapshot length accepted (libpcap's MAXIMUM_SNAPLEN).</summary>
    public const int MaxSnapLength = 262_144;

    private const long TicksPerSecond = TimeSpan.TicksPerSecond;
    private readonly Stream _stream;
    private readonly bool _leaveOpen;

    /// <summary>Writes the file header to <paramref name="stream"/>; records follow with <see cref="Write(long, ReadOnlySpan{byte}, int)"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="snapLength"/> is not 1 to <see cref="MaxSnapLength"/>.</exception>
    public PcapWriter(Stream stream, int snapLength = MaxSnapLength, PcapTimestampResolution resolution = PcapTimestampResolution.Microseconds,
        bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(snapLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(snapLength, MaxSnapLength);
        _stream = stream;
        _leaveOpen = leaveOpen;
        SnapLength = snapLength;
        Resolution = resolution;
        Span<byte> h = stackalloc byte[FileHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(h, resolution == PcapTimestampResolution.Nanoseconds ? NanosecondMagic : MicrosecondMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 2);  // version_major
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 4);  // version_minor
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], 0);   // thiszone: timestamps are UTC
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 0); // sigfigs: always 0
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], (uint)snapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], LinkTypeEthernet);
        _stream.Write(h);
    }

    /// <summary>The most bytes of a frame each record holds.</summary>
    public int SnapLength { get; }

    /// <summary>The timestamps' resolution.</summary>
    public PcapTimestampResolution Resolution { get; }

    /// <summary>Records written.</summary>
    public long Records { get; private set; }

    /// <summary>Writes one record: the frame seen at <paramref name="timestamp"/>, cut to <see cref="SnapLength"/>.</summary>
    public void Write(DateTimeOffset timestamp, ReadOnlySpan<byte> frame) =>
        Write(timestamp.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks, frame, frame.Length);

    /// <summary>
    /// Writes one record: <paramref name="captured"/> (at most <see cref="SnapLength"/> bytes of it) of a frame that was
    /// <paramref name="originalLength"/> bytes long, seen <paramref name="unixTicks"/> 100-ns ticks after 1970-01-01 UTC.
    /// </summary>
    public void Write(long unixTicks, ReadOnlySpan<byte> captured, int originalLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(unixTicks);
        ArgumentOutOfRangeException.ThrowIfLessThan(originalLength, captured.Length);
        var data = captured.Length > SnapLength ? captured[..SnapLength] : captured;
        long fraction = unixTicks % TicksPerSecond;
        Span<byte> h = stackalloc byte[RecordHeaderSize];
        // ts_sec is 32 bits unsigned: good until 2106.
        BinaryPrimitives.WriteUInt32LittleEndian(h, (uint)(unixTicks / TicksPerSecond));
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], (uint)(Resolution == PcapTimestampResolution.Nanoseconds ? fraction * 100 : fraction / 10));
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], (uint)data.Length);   // incl_len
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], (uint)originalLength); // orig_len
        _stream.Write(h);
        _stream.Write(data);
        Records++;
    }

    /// <summary>Pushes buffered records to the stream's backing store.</summary>
    public void Flush() => _stream.Flush();

    /// <summary>Flushes and, unless asked to leave it open, closes the stream.</summary>
    public void Dispose()
    {
        _stream.Flush();
        if (!_leaveOpen) { _stream.Dispose(); }
    }
}
