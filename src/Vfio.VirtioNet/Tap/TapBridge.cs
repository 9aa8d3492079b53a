using Vfio.Tap;
using Vfio.Net;
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
public readonly record struct TapBridgeStats(long ToKernel, long ToKernelDropped, long FromKernel, long FromKernelDropped, long Rounds);

/// <summary>
/// The kernel exception path of a userspace port (DPDK's TAP/virtio-user exception path, formerly KNI): frames the
/// port receives go to a <see cref="TapInterface"/>, so the kernel's IP stack sees them as if the NIC were its own;
/// frames the kernel sends on the TAP go out on the port. Bursts both ways on one thread; receive buffers become
/// TAP writes and TAP reads land straight in the port's packet buffers, so nothing is allocated per frame.
/// </summary>
/// <remarks>
/// Use <see cref="Run"/> for a port given entirely to the kernel, or call <see cref="Poll"/> from an application's
/// own loop; an application that keeps some frames for itself receives from the port itself and hands the others
/// to <see cref="TapInterface.Write"/>.
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
    private long _toKernel, _toKernelDropped, _fromKernel, _fromKernelDropped, _rounds;

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
        // A TAP frame is at most the interface MTU plus the Ethernet header (the TAP is given the port's MTU).
        _frameRoom = Math.Min(port.Pool.DataRoom, port.Mtu + TapInterface.EthernetHeaderSize);
        Capture = _options.Capture;
    }

    /// <summary>The capture that sees every frame both ways; may be set or cleared while the bridge runs.</summary>
    public PacketCapture? Capture { get; set; }

    /// <summary>Counters so far (read from any thread; each is exact, together they are a near-simultaneous view).</summary>
    public TapBridgeStats Stats => new(Volatile.Read(ref _toKernel), Volatile.Read(ref _toKernelDropped), Volatile.Read(ref _fromKernel),
        Volatile.Read(ref _fromKernelDropped), Volatile.Read(ref _rounds));

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
            int written = 0;
            for (int i = 0; i < burst.Length; i++)
            {
                if (_tap.Write(burst[i].Data)) { written++; }
            }
            PacketPool.Free(burst);
            Volatile.Write(ref _toKernel, _toKernel + written);
            if (written < received) { Volatile.Write(ref _toKernelDropped, _toKernelDropped + received - written); }
            moved += received;
        }

        if (_spare < _fromTap.Length) { _spare += _port.Pool.Allocate(_fromTap.AsSpan(_spare)); }
        int read = 0;
        while (read < _spare)
        {
            var buffer = _fromTap[read];
            int length = _tap.Read(buffer.Room[.._frameRoom]);
            if (length == 0) { break; }
            buffer.Length = length;
            read++;
        }
        if (read > 0)
        {
            var burst = _fromTap.AsSpan(0, read);
            capture?.Add(burst);
            int taken = _port.Transmit(burst);
            if (taken < read) { PacketPool.Free(burst[taken..]); }
            // The buffers not read into move to the front for the next round.
            _fromTap.AsSpan(read, _spare - read).CopyTo(_fromTap);
            _spare -= read;
            Volatile.Write(ref _fromKernel, _fromKernel + taken);
            if (taken < read) { Volatile.Write(ref _fromKernelDropped, _fromKernelDropped + read - taken); }
            moved += read;
        }
        Volatile.Write(ref _rounds, _rounds + 1);
        return moved;
    }

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
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "bridging port {Port} and TAP {Tap}")]
    private partial void LogStarted(string port, string tap);

    [LoggerMessage(Level = LogLevel.Information, Message = "bridge {Port} <-> {Tap} stopped: {ToKernel} frames to the kernel, {FromKernel} from it, {Dropped} dropped")]
    private partial void LogStopped(string port, string tap, long toKernel, long fromKernel, long dropped);
}
