using Vfio.Tap;
using Vfio.Net;
using Vfio.Spec.Virtio;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.VirtioNet;

/// <summary>How a <see cref="TapBridge"/> moves frames.</summary>
public sealed record TapBridgeOptions
{
    /// <summary>Frames per burst each way.</summary>
    public int Burst { get; init; } = 32;

    /// <summary>Empty rounds (nothing either way) before the loop starts waiting on the TAP instead of spinning.</summary>
    public int IdleRoundsBeforeWait { get; init; } = 256;

    /// <summary>
    /// The longest wait on an idle TAP, in milliseconds: also the longest a frame from the port waits, since the
    /// polled port has no descriptor to wake the loop.
    /// </summary>
    public int IdleWaitMilliseconds { get; init; } = 1;

    /// <summary>
    /// On a TAP with offloads: join consecutive in-order TCP segments of one flow in a received burst into one packet of
    /// up to 64 KiB for the kernel (<see cref="TcpCoalescer"/>, software GRO), one write instead of one per frame.
    /// </summary>
    public bool CoalesceReceive { get; init; } = true;

    /// <summary>A capture that sees every frame both ways (null: none, and no cost).</summary>
    public PacketCapture? Capture { get; init; }

    /// <summary>Where the bridge logs (null: nowhere).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>What a <see cref="TapBridge"/> moved.</summary>
/// <param name="ToKernel">Frames received on the port and written to the TAP.</param>
/// <param name="ToKernelDropped">Frames received on the port that the TAP did not take (interface down, backlog full).</param>
/// <param name="FromKernel">Frames read from the TAP and sent on the port.</param>
/// <param name="FromKernelDropped">Frames read from the TAP that the port's transmit queue did not take.</param>
/// <param name="Rounds">Polling rounds.</param>
/// <param name="FromKernelSegmented">TCP segments of up to 64 KiB the kernel handed over (a TAP with <see cref="TapOffloads.Tso4"/> or
/// <see cref="TapOffloads.Tso6"/>) and the bridge cut into MSS-sized frames; each frame counts in <paramref name="FromKernel"/>.</param>
/// <param name="ToKernelCoalesced">Packets of two or more received TCP segments joined for the kernel (<see cref="TapBridgeOptions.CoalesceReceive"/>);
/// each segment counts in <paramref name="ToKernel"/>.</param>
/// <param name="FromKernelMalformed">Frames read from the TAP that the bridge could not send: a virtio_net_hdr asking for an
/// offload it does not do (UDP segmentation), checksum fields outside the frame, a segment that is not TCP it understands.</param>
/// <param name="FromKernelWhole">TCP segments of up to 64 KiB the kernel handed over that went to the port whole, for its device
/// to cut (<see cref="NetOffloads.TcpSegmentation"/>); each counts once in <paramref name="FromKernel"/>.</param>
/// <param name="ToKernelWhole">Packets the port's device had already joined (<see cref="PacketFlags.TcpSegments"/>) written to the
/// kernel as one GSO packet each; each counts once in <paramref name="ToKernel"/>.</param>
public readonly record struct TapBridgeStats(long ToKernel, long ToKernelDropped, long FromKernel, long FromKernelDropped, long Rounds,
    long FromKernelSegmented = 0, long FromKernelMalformed = 0, long ToKernelCoalesced = 0, long FromKernelWhole = 0, long ToKernelWhole = 0);

/// <summary>
/// The kernel exception path of a userspace port (DPDK's TAP/virtio-user exception path, formerly KNI): frames the
/// port receives go to a <see cref="TapInterface"/>, so the kernel's IP stack sees them as if the NIC were its own;
/// frames the kernel sends on the TAP go out on the port. Bursts both ways on one thread; receive buffers become
/// TAP writes and TAP reads land straight in the port's packet buffers, so nothing is allocated per frame.
/// </summary>
/// <remarks>
/// <para>With a TAP created with offloads (<see cref="TapInterface.HasVirtioHeader"/>), every frame carries a
/// virtio_net_hdr: frames the kernel left with a partial checksum (NEEDS_CSUM) are completed before they are sent, TCP
/// segments of up to 64 KiB (gso_type TCPV4/TCPV6, <see cref="TapOffloads.Tso4"/>/<see cref="TapOffloads.Tso6"/>) are
/// cut into MSS-sized frames in software (<see cref="TcpSegmentation"/>), so the kernel's TCP hands over one large
/// segment where it would otherwise write one frame per MSS; the other way, in-order TCP segments of one flow in a
/// received burst are joined into one packet for the kernel (<see cref="TcpCoalescer"/>,
/// <see cref="TapBridgeOptions.CoalesceReceive"/>).</para>
/// Use <see cref="Run"/> for a port given entirely to the kernel, or call <see cref="Poll"/> from an application's
/// own loop; an application that keeps some frames for itself receives from the port itself and hands the others
/// to <see cref="TapInterface.Write(ReadOnlySpan{byte})"/> (or its overload with a header on a TAP with offloads).
/// </remarks>
public sealed partial class TapBridge : IDisposable
{
    private readonly PacketPort _port;
    private readonly TapInterface _tap;
    private readonly TapBridgeOptions _options;
    private readonly ILogger _logger;
    private readonly PacketBuffer[] _fromPort;
    private readonly PacketBuffer[] _fromTap;
    private readonly int _frameRoom;
    private int _spare; // allocated buffers kept in _fromTap[0.._spare) for the next TAP reads
    private long _toKernel, _toKernelDropped, _fromKernel, _fromKernelDropped, _rounds, _segmented, _malformed, _coalesced, _fromKernelWhole, _toKernelWhole;
    private readonly PacketBuffer[] _one = new PacketBuffer[1];
    private PacketBuffer _pendingWhole;   // a kernel segment in a large buffer the port's ring has not taken yet
    private byte[]? _cutScratch;          // plain TAP only: a joined packet cut back into frames
    private readonly TcpCoalescer? _coalescer;
    // A TAP with a virtio_net_hdr per frame: the headers read and written, where a frame longer than a packet buffer
    // (a TCP segment of up to 64 KiB) lands, and the buffers its MSS-sized frames are cut into.
    private readonly byte[] _readHeader = new byte[TapInterface.VirtioHeaderSize];
    private readonly byte[] _writeHeader = new byte[TapInterface.VirtioHeaderSize];
    private readonly byte[]? _overflow;
    private readonly PacketBuffer[]? _segments;
    // The TCP segment being cut (its frame in _overflow): the next of its frames to send (-1: none pending) and how
    // many of them the capture has seen.
    private TcpSegmentation _pending;
    private int _pendingNext = -1, _pendingCaptured;

    /// <summary>Bridges <paramref name="port"/> and <paramref name="tap"/> (neither is owned: the caller disposes both).</summary>
    public TapBridge(PacketPort port, TapInterface tap, TapBridgeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentNullException.ThrowIfNull(tap);
        _options = options ?? new TapBridgeOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.Burst, 1);
        _port = port;
        _tap = tap;
        _logger = _options.LoggerFactory?.CreateLogger<TapBridge>() ?? NullLogger<TapBridge>.Instance;
        _fromPort = new PacketBuffer[_options.Burst];
        _fromTap = new PacketBuffer[_options.Burst];
        // A TAP frame is at most the interface MTU plus the Ethernet header (the TAP is given the port's MTU) and an
        // 802.1Q tag: tun_put_user writes the tag the kernel's VLAN acceleration kept aside back into the frame.
        _frameRoom = Math.Min(port.Pool.DataRoom, port.Mtu + TapInterface.EthernetHeaderSize + 4);
        if (tap.HasVirtioHeader)
        {
            // The frame may run on past the packet buffer into the overflow: its first _frameRoom bytes are the
            // buffer's, so the overflow keeps room for them in front to make the frame contiguous there.
            _overflow = new byte[_frameRoom + TapInterface.MaxSegmentFrameSize];
            _segments = new PacketBuffer[64];
            if (_options.CoalesceReceive) { _coalescer = new TcpCoalescer(); }
        }
        Capture = _options.Capture;
    }

    /// <summary>The capture that sees every frame both ways; may be set or cleared while the bridge runs.</summary>
    public PacketCapture? Capture { get; set; }

    /// <summary>Counters so far (read from any thread; each is exact, together they are a near-simultaneous view).</summary>
    public TapBridgeStats Stats => new(Volatile.Read(ref _toKernel), Volatile.Read(ref _toKernelDropped), Volatile.Read(ref _fromKernel),
        Volatile.Read(ref _fromKernelDropped), Volatile.Read(ref _rounds), Volatile.Read(ref _segmented), Volatile.Read(ref _malformed), Volatile.Read(ref _coalesced),
        Volatile.Read(ref _fromKernelWhole), Volatile.Read(ref _toKernelWhole));

    /// <summary>One round: a burst from the port to the TAP, then a burst from the TAP to the port. Returns frames moved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Poll()
    {
        var capture = Capture;
        int moved = 0;

        int received = _port.Receive(_fromPort);
        if (received > 0)
        {
            var burst = _fromPort.AsSpan(0, received);
            capture?.Add(burst);
            int written;
            try { written = WriteToKernel(burst); }
            finally
            {
                // Also when a write failed outright: the burst is the bridge's to free either way.
                PacketPool.Free(burst);
            }
            Volatile.Write(ref _toKernel, _toKernel + written);
            if (written < received) { Volatile.Write(ref _toKernelDropped, _toKernelDropped + received - written); }
            moved += received;
        }

        if (_spare < _fromTap.Length) { _spare += _port.Pool.Allocate(_fromTap.AsSpan(_spare)); }
        if (_tap.HasVirtioHeader)
        {
            moved += PollTapWithHeader(capture);
        }
        else
        {
            int read = 0;
            while (read < _spare)
            {
                var buffer = _fromTap[read];
                int length = _tap.Read(buffer.Room[.._frameRoom]);
                if (length == 0) { break; }
                buffer.Length = length;
                read++;
            }
            moved += SendFromTap(read, capture);
        }
        Volatile.Write(ref _rounds, _rounds + 1);
        return moved;
    }

    /// <summary>
    /// Hands a received burst to the kernel, joining TCP segments on a TAP that coalesces; returns the frames written
    /// (the caller still owns the burst).
    /// </summary>
    private int WriteToKernel(ReadOnlySpan<PacketBuffer> burst)
    {
        int written = 0;
        if (!_tap.HasVirtioHeader)
        {
            for (int i = 0; i < burst.Length; i++)
            {
                if ((burst[i].Flags & PacketFlags.TcpSegments) != 0 && burst[i].Length > _frameRoom) { written += WriteCut(burst[i]); }
                else if (_tap.Write(burst[i].Data)) { written++; }
            }
            return written;
        }
        var coalescer = _coalescer;
        for (int i = 0; i < burst.Length; i++)
        {
            if ((burst[i].Flags & PacketFlags.TcpSegments) != 0 && burst[i].SegmentSize > 0)
            {
                // Already joined by the device: what the coalescer holds goes first, then this one as one GSO packet.
                // Only with its checksum checked: the kernel trusts the partial checksum written for it, so data nobody
                // checked would become data that looks right. Without, it is dropped (counted by the caller).
                if (coalescer is { SegmentCount: > 0 }) { written += WriteCoalesced(); }
                if ((burst[i].Flags & PacketFlags.L4ChecksumGood) != 0 && WriteWhole(burst[i])) { written++; }
                continue;
            }
            if (coalescer is not null)
            {
                var flags = burst[i].Flags;
                bool tcpChecked = (flags & PacketFlags.L4ChecksumGood) != 0, ipChecked = (flags & PacketFlags.IpChecksumGood) != 0;
                if (coalescer.TryAdd(burst[i].Data, tcpChecked, ipChecked)) { continue; }
                if (coalescer.SegmentCount > 0)
                {
                    written += WriteCoalesced();
                    if (coalescer.TryAdd(burst[i].Data, tcpChecked, ipChecked)) { continue; }
                }
            }
            if (WritePlain(burst[i].Data)) { written++; }
        }
        if (coalescer is { SegmentCount: > 0 }) { written += WriteCoalesced(); }
        return written;
    }

    /// <summary>
    /// Writes one frame with a header that asks nothing. Not DATA_VALID: Linux's tun (6.1-6.12, virtio_net_hdr_to_skb)
    /// does not read it on a write and checks the checksum itself, and virtio 1.2 §5.1.6.2.1 keeps that flag for the
    /// device's side.
    /// </summary>
    private bool WritePlain(ReadOnlySpan<byte> frame)
    {
        SetWriteHeader(0, VirtioNetHeader.GsoNone, 0, 0, 0, 0);
        return _tap.Write(_writeHeader, frame);
    }

    /// <summary>
    /// Writes the coalesced packet: one segment as it came, several as one GSO packet with a
    /// partial checksum (NEEDS_CSUM at the TCP header, gso_size the first segment's payload, as the kernel's GRO builds
    /// them). Returns the segments the kernel took.
    /// </summary>
    private int WriteCoalesced()
    {
        var coalescer = _coalescer!;
        int segments = coalescer.SegmentCount;
        int length = coalescer.Complete();
        var packet = coalescer.Packet[..length];
        bool taken;
        if (segments == 1)
        {
            taken = WritePlain(packet);
        }
        else
        {
            SetWriteHeader(VirtioNetHeader.FlagNeedsCsum, coalescer.IsIpv4 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6,
                coalescer.HeaderLength, coalescer.MaxSegmentSize, coalescer.TransportStart, TransportHeader.TcpChecksumOffset);
            taken = _tap.Write(_writeHeader, packet);
            if (taken) { Volatile.Write(ref _coalesced, _coalesced + 1); }
        }
        return taken ? segments : 0;   // the caller counts what was received and not written as dropped
    }

    /// <summary>
    /// Writes a packet the port's device joined (GUEST_TSO) as one GSO packet, as the kernel's GRO would hand it up:
    /// NEEDS_CSUM at the TCP header with the pseudo-header sum in the checksum field (the driver had completed it),
    /// gso_size the device's. A packet that is not TCP the parser understands goes as it is.
    /// </summary>
    private bool WriteWhole(PacketBuffer packet)
    {
        var frame = packet.Data;
        if (!TransportHeader.TryLocate(frame, out var l4) || !l4.IsTcp || l4.Length < 20) { return WritePlain(frame); }
        int headerLength = l4.Start + (frame[l4.Start + 12] >> 4) * 4;
        BinaryPrimitives.WriteUInt16BigEndian(frame[(l4.Start + TransportHeader.TcpChecksumOffset)..], InternetChecksum.Fold(l4.PseudoHeaderSum));
        SetWriteHeader(VirtioNetHeader.FlagNeedsCsum, l4.IsIpv4 ? VirtioNetHeader.GsoTcpV4 : VirtioNetHeader.GsoTcpV6,
            headerLength, packet.SegmentSize, l4.Start, TransportHeader.TcpChecksumOffset);
        if (!_tap.Write(_writeHeader, frame)) { return false; }
        Volatile.Write(ref _toKernelWhole, _toKernelWhole + 1);
        return true;
    }

    /// <summary>
    /// A joined packet cut back into frames of the MTU for a TAP without offloads; only one whose checksum was checked,
    /// as cutting gives each frame a fresh checksum. Returns 1 when some frame was written (one packet received, one
    /// counted), else 0.
    /// </summary>
    private int WriteCut(PacketBuffer packet)
    {
        var frame = packet.Data;
        int mss = packet.SegmentSize;
        if ((packet.Flags & PacketFlags.L4ChecksumGood) == 0 || mss == 0 || !TcpSegmentation.TryPlan(frame, mss, out var plan) || plan.MaxSegmentLength > _frameRoom) { return 0; }
        var scratch = _cutScratch ??= new byte[_frameRoom];
        int written = 0;
        for (int s = 0; s < plan.SegmentCount; s++)
        {
            int length = plan.WriteSegment(frame, s, scratch);
            if (_tap.Write(scratch.AsSpan(0, length))) { written++; }
        }
        return written > 0 ? 1 : 0;   // one packet received, one counted
    }

    private void SetWriteHeader(byte flags, byte gsoType, int headerLength, int gsoSize, int csumStart, int csumOffset)
    {
        var h = _writeHeader.AsSpan();
        h[VirtioNetHeader.Flags] = flags;
        h[VirtioNetHeader.GsoType] = gsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.HeaderLength..], (ushort)headerLength);
        BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.GsoSize..], (ushort)gsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.CsumStart..], (ushort)csumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(h[VirtioNetHeader.CsumOffset..], (ushort)csumOffset);
    }

    /// <summary>Sends the first <paramref name="read"/> spare buffers (filled from the TAP) on the port; the rest move to the front.</summary>
    private int SendFromTap(int read, PacketCapture? capture)
    {
        if (read == 0) { return 0; }
        var burst = _fromTap.AsSpan(0, read);
        capture?.Add(burst);
        int taken = _port.Transmit(burst);
        if (taken < read) { PacketPool.Free(burst[taken..]); }
        // The buffers not read into move to the front for the next round.
        _fromTap.AsSpan(read, _spare - read).CopyTo(_fromTap);
        _spare -= read;
        Volatile.Write(ref _fromKernel, _fromKernel + taken);
        if (taken < read) { Volatile.Write(ref _fromKernelDropped, _fromKernelDropped + read - taken); }
        return read;
    }

    /// <summary>
    /// The TAP-to-port half on a TAP with a virtio_net_hdr per frame (virtio 1.2 §5.1.6.2's fields, as the kernel fills
    /// them). A TCP segment being cut that the port's ring cannot take whole stays pending: the next rounds send the rest
    /// before reading the TAP again, so what the bridge read is not lost to a full ring; the kernel's frames then wait
    /// in the TAP's queue (tun drops there when that fills, as a NIC's queue would, and TCP's small-queue limit keeps
    /// a sender from filling it).
    /// </summary>
    private int PollTapWithHeader(PacketCapture? capture)
    {
        int moved = 0;
        if (_pendingNext >= 0)
        {
            moved += ContinueSegments(capture);
            if (_pendingNext >= 0) { return moved; }
        }
        if (_pendingWhole.IsValid)
        {
            moved += ContinueWhole();
            if (_pendingWhole.IsValid) { return moved; }
        }
        int read = 0, cut = 0;
        // A cut segment counts as one read: at most one burst's worth of TAP reads per round, so the other
        // direction gets its turn.
        while (read < _spare - cut)
        {
            var buffer = _fromTap[read];
            int length = _tap.Read(_readHeader, buffer.Room[.._frameRoom], _overflow.AsSpan(_frameRoom));
            if (length == 0) { break; }
            bool ecn = (_readHeader[VirtioNetHeader.GsoType] & VirtioNetHeader.GsoEcn) != 0;
            int gso = _readHeader[VirtioNetHeader.GsoType] & ~VirtioNetHeader.GsoEcn;
            if (gso == VirtioNetHeader.GsoNone)
            {
                // Not cut: a frame that fits one buffer, its checksum finished here when the kernel left it partial.
                // A bad frame leaves the buffer where it is, for the next read.
                if (length > _frameRoom || !CompleteChecksum(buffer.Room[..length])) { Malformed(); continue; }
                buffer.Length = length;
                read++;
                continue;
            }
            if (gso is not (VirtioNetHeader.GsoTcpV4 or VirtioNetHeader.GsoTcpV6)) { Malformed(gso); continue; }
            // The whole frame in the overflow (its head was read into the buffer), which keeps it while it is cut.
            buffer.Room[..Math.Min(length, _frameRoom)].CopyTo(_overflow);
            int mss = BinaryPrimitives.ReadUInt16LittleEndian(_readHeader.AsSpan(VirtioNetHeader.GsoSize));
            if (mss == 0 || !TcpSegmentation.TryPlan(_overflow.AsSpan(0, length), mss, out var plan) || plan.MaxSegmentLength > _frameRoom)
            {
                // Also TCP that TransportHeader does not parse (IPv6 extension headers, QinQ): its retransmissions come
                // the same way, so the first is logged as a warning.
                Malformed(gso);
                continue;
            }
            // What came before goes first, so that the kernel's order is kept.
            moved += SendFromTap(read, capture);
            read = 0;
            cut++;
            if (!ecn && (_port.Offloads & NetOffloads.TcpSegmentation) != 0 && _port.LargePool is { } large && length <= large.DataRoom
                && large.TryAllocate(out var whole))
            {
                // The port's device cuts it: handed over whole, in a large buffer (the driver redoes both checksums).
                // Not with ECN (CWR on the first segment only): the device would need HOST_ECN, never negotiated.
                _overflow.AsSpan(0, length).CopyTo(whole.Room);
                whole.Length = length;
                whole.Flags = PacketFlags.TxTcpSegmentation;
                whole.SegmentSize = mss;
                _one[0] = whole;
                capture?.Add(_one);
                _pendingWhole = whole;
                moved += ContinueWhole();
                if (_pendingWhole.IsValid) { return moved; }
                continue;
            }
            Volatile.Write(ref _segmented, _segmented + 1);
            _pending = plan;
            _pendingNext = _pendingCaptured = 0;
            moved += ContinueSegments(capture);
            if (_pendingNext >= 0) { return moved; }
        }
        return moved + SendFromTap(read, capture);
    }

    /// <summary>Offers the pending whole segment to the port again (flushing once when its ring is full); 1 when taken.</summary>
    private int ContinueWhole()
    {
        _one[0] = _pendingWhole;
        int taken = _port.Transmit(_one);
        if (taken == 0)
        {
            _port.Flush();
            taken = _port.Transmit(_one);
        }
        if (taken == 0) { return 0; }
        _pendingWhole = default;
        Volatile.Write(ref _fromKernel, _fromKernel + 1);
        Volatile.Write(ref _fromKernelWhole, _fromKernelWhole + 1);
        return 1;
    }

    /// <summary>Sends the pending segment's frames from <see cref="_pendingNext"/> on while the pool and the port take them; returns frames sent.</summary>
    private int ContinueSegments(PacketCapture? capture)
    {
        var plan = _pending;
        ReadOnlySpan<byte> frame = _overflow.AsSpan(0, plan.HeaderLength + plan.PayloadLength);
        var segments = _segments!;
        int count = plan.SegmentCount, sent = 0;
        while (_pendingNext < count)
        {
            int first = _pendingNext;
            int got = _port.Pool.Allocate(segments.AsSpan(0, Math.Min(segments.Length, count - first)));
            if (got == 0) { break; }
            for (int i = 0; i < got; i++) { segments[i].Length = plan.WriteSegment(frame, first + i, segments[i].Room); }
            var burst = segments.AsSpan(0, got);
            // Each frame is captured once, when first offered (one the ring refuses is offered again later, unchanged).
            if (capture is not null && first + got > _pendingCaptured)
            {
                capture.Add(burst[Math.Max(0, _pendingCaptured - first)..]);
                _pendingCaptured = first + got;
            }
            int taken = _port.Transmit(burst);
            if (taken < got)
            {
                _port.Flush();
                taken += _port.Transmit(burst[taken..]);
            }
            if (taken < got) { PacketPool.Free(burst[taken..]); }
            Volatile.Write(ref _fromKernel, _fromKernel + taken);
            _pendingNext += taken;
            sent += taken;
            if (taken < got) { break; }
        }
        if (_pendingNext >= count) { _pendingNext = -1; }
        return sent;
    }

    /// <summary>
    /// Finishes a checksum the kernel left partial (NEEDS_CSUM: the field at csum_start + csum_offset holds the
    /// pseudo-header sum, virtio 1.2 §5.1.6.2); false when those fields point outside the frame.
    /// </summary>
    private bool CompleteChecksum(Span<byte> frame)
    {
        if ((_readHeader[VirtioNetHeader.Flags] & VirtioNetHeader.FlagNeedsCsum) == 0) { return true; }
        int start = BinaryPrimitives.ReadUInt16LittleEndian(_readHeader.AsSpan(VirtioNetHeader.CsumStart));
        int offset = BinaryPrimitives.ReadUInt16LittleEndian(_readHeader.AsSpan(VirtioNetHeader.CsumOffset));
        if (start + offset + 2 > frame.Length) { return false; }
        ChecksumOffload.Complete(frame[start..], offset, 0);
        return true;
    }

    private void Malformed(int gsoType = VirtioNetHeader.GsoNone)
    {
        if (_malformed == 0) { LogFirstMalformed(_tap.Name, gsoType); }
        Volatile.Write(ref _malformed, _malformed + 1);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "TAP {Tap} handed over a frame the bridge cannot send (gso_type {GsoType}: not TCP over IPv4/IPv6 it parses, a segment larger than the MTU, or checksum fields outside the frame); it and any like it are dropped and counted")]
    private partial void LogFirstMalformed(string tap, int gsoType);

    /// <summary>
    /// Polls until <paramref name="cancellationToken"/> is cancelled: spins while frames flow, and after
    /// <see cref="TapBridgeOptions.IdleRoundsBeforeWait"/> empty rounds waits up to
    /// <see cref="TapBridgeOptions.IdleWaitMilliseconds"/> on the TAP between rounds. Returns the counters.
    /// </summary>
    public TapBridgeStats Run(CancellationToken cancellationToken)
    {
        LogStarted(_port.Name, _tap.Name);
        int idle = 0;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                if (Poll() > 0) { idle = 0; continue; }
                if (idle == 0) { _port.Flush(); }
                if (++idle >= _options.IdleRoundsBeforeWait) { _tap.WaitReadable(_options.IdleWaitMilliseconds); }
            }
            _port.Flush();
        }
        finally
        {
            ReleaseSpares();
        }
        var stats = Stats;
        LogStopped(_port.Name, _tap.Name, stats.ToKernel, stats.FromKernel, stats.ToKernelDropped + stats.FromKernelDropped);
        return stats;
    }

    /// <summary>Returns the buffers kept for TAP reads to the pool (the port and the TAP stay open: they are the caller's).</summary>
    public void Dispose() => ReleaseSpares();

    private void ReleaseSpares()
    {
        PacketPool.Free(_fromTap.AsSpan(0, _spare));
        _spare = 0;
        if (_pendingNext >= 0)
        {
            // The frames of a cut segment never sent: dropped (no buffer holds them).
            Volatile.Write(ref _fromKernelDropped, _fromKernelDropped + _pending.SegmentCount - _pendingNext);
            _pendingNext = -1;
        }
        if (_pendingWhole.IsValid)
        {
            _pendingWhole.Free();
            _pendingWhole = default;
            Volatile.Write(ref _fromKernelDropped, _fromKernelDropped + 1);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "bridging port {Port} and TAP {Tap}")]
    private partial void LogStarted(string port, string tap);

    [LoggerMessage(Level = LogLevel.Information, Message = "bridge {Port} <-> {Tap} stopped: {ToKernel} frames to the kernel, {FromKernel} from it, {Dropped} dropped")]
    private partial void LogStopped(string port, string tap, long toKernel, long fromKernel, long dropped);
}
