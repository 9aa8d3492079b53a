using Vfio.Net;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Vfio.VirtioNet;

/// <summary>How a <see cref="PacketCapture"/> copies and writes.</summary>
public sealed record PacketCaptureOptions
{
    /// <summary>The most bytes of each frame kept (pcap snaplen); tcpdump's default is 262144.</summary>
    public int SnapLength { get; init; } = PcapWriter.MaxSnapLength;

    /// <summary>
    /// Bytes of each queue slot: frames are copied up to the smaller of this and <see cref="SnapLength"/> (the record
    /// keeps the frame's real length). 2048 holds any frame of a 1500-byte MTU and a whole packet buffer's data room.
    /// </summary>
    public int SlotSize { get; init; } = 2048;

    /// <summary>Frames the queue between the data path and the file holds; when it is full, frames are dropped (counted).</summary>
    public int QueueFrames { get; init; } = 4096;

    /// <summary>Stop taking frames after this many (null: no limit).</summary>
    public long? MaxFrames { get; init; }

    /// <summary>Record timestamp resolution.</summary>
    public PcapTimestampResolution Resolution { get; init; } = PcapTimestampResolution.Microseconds;

    /// <summary>The clock stamped on each burst (default <see cref="TimeProvider.System"/>).</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where the writer logs (null: nowhere).</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>What a capture did.</summary>
/// <param name="Captured">Frames copied into the queue.</param>
/// <param name="Dropped">Frames not copied because the queue was full (the file is behind) or writing failed.</param>
/// <param name="Written">Records written to the file.</param>
public readonly record struct PacketCaptureStats(long Captured, long Dropped, long Written);

/// <summary>The capture file could not be created or written.</summary>
public sealed class PacketCaptureException(string message, Exception? inner = null) : VfioException(message, null, 0, null, inner);

/// <summary>
/// A tap on a data path: <see cref="Add(ReadOnlySpan{PacketBuffer})"/> copies each frame of a burst into a bounded
/// queue of preallocated slots and returns at once; a writer thread empties the queue into a pcap file
/// (<see cref="PcapWriter"/>). A slow disk costs dropped captures (<see cref="PacketCaptureStats.Dropped"/>), never a
/// slower data path: the producer never waits, locks or allocates. One producer thread (the one polling the port);
/// a data path without a capture pays one null check per burst.
/// </summary>
public sealed partial class PacketCapture : IDisposable
{
    private readonly PcapWriter _writer;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly int _slotSize;
    private readonly int _slotCount;
    private readonly long _maxFrames;
    private readonly byte[] _data;
    private readonly int[] _captured;
    private readonly int[] _original;
    private readonly long[] _ticks;
    private readonly Thread _thread;
    // Single producer, single consumer: the producer owns _head, the writer thread _tail; each reads the other's.
    private long _head;
    private long _tail;
    private long _dropped;
    private volatile bool _stopping;
    private volatile Exception? _writeError;
    private bool _disposed;

    /// <summary>Starts a capture into <paramref name="stream"/> (which the capture closes when disposed).</summary>
    public PacketCapture(Stream stream, PacketCaptureOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        options ??= new PacketCaptureOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SlotSize, 64);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.QueueFrames, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.QueueFrames, 1 << 20);
        if (options.MaxFrames is < 1) { throw new ArgumentOutOfRangeException(nameof(options), options.MaxFrames, "MaxFrames must be 1 or more"); }
        _writer = new PcapWriter(stream, options.SnapLength, options.Resolution);
        _time = options.TimeProvider ?? TimeProvider.System;
        _logger = options.LoggerFactory?.CreateLogger<PacketCapture>() ?? NullLogger<PacketCapture>.Instance;
        _slotSize = Math.Min(options.SnapLength, options.SlotSize);
        _slotCount = options.QueueFrames;
        _maxFrames = options.MaxFrames ?? long.MaxValue;
        _data = GC.AllocateUninitializedArray<byte>(_slotSize * _slotCount, pinned: true);
        _captured = new int[_slotCount];
        _original = new int[_slotCount];
        _ticks = new long[_slotCount];
        _thread = new Thread(WriteLoop) { IsBackground = true, Name = "vfio-pcap-writer" };
        _thread.Start();
    }

    /// <summary>Creates (or truncates) the pcap file <paramref name="path"/> and starts a capture into it.</summary>
    /// <exception cref="PacketCaptureException">The file cannot be created (missing directory, no permission, read-only file system).</exception>
    public static PacketCapture ToFile(string path, PacketCaptureOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 1 << 20);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new PacketCaptureException($"cannot write the capture file {path}: {e.Message}", e);
        }
        try
        {
            return new PacketCapture(file, options);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Counters so far.</summary>
    public PacketCaptureStats Stats => new(Volatile.Read(ref _head), Volatile.Read(ref _dropped), Volatile.Read(ref _tail));

    /// <summary>Whether <see cref="PacketCaptureOptions.MaxFrames"/> frames have been taken (further frames are ignored, not dropped).</summary>
    public bool IsFull => Volatile.Read(ref _head) >= _maxFrames;

    /// <summary>
    /// Copies every frame of <paramref name="burst"/> (the caller keeps the buffers), stamped with one time for the
    /// burst. Never blocks: frames that find the queue full are counted as dropped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(ReadOnlySpan<PacketBuffer> burst)
    {
        if (burst.IsEmpty) { return; }
        long ticks = UnixTicks();
        for (int i = 0; i < burst.Length; i++)
        {
            if (!Add(ticks, burst[i].Data)) { return; }
        }
    }

    /// <summary>Copies one frame (see <see cref="Add(ReadOnlySpan{PacketBuffer})"/>).</summary>
    public void Add(ReadOnlySpan<byte> frame) => Add(UnixTicks(), frame);

    private long UnixTicks() => _time.GetUtcNow().UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;

    // False when the capture takes no more frames (full or failed), so a burst stops early.
    private bool Add(long ticks, ReadOnlySpan<byte> frame)
    {
        long head = _head;
        if (head >= _maxFrames) { return false; }
        if (_writeError is not null || head - Volatile.Read(ref _tail) >= _slotCount)
        {
            // Interlocked: the writer thread adds to the count too when a write fails. Only the drop path pays for it.
            Interlocked.Increment(ref _dropped);
            return true;
        }
        int slot = (int)(head % _slotCount);
        int n = Math.Min(frame.Length, _slotSize);
        frame[..n].CopyTo(_data.AsSpan(slot * _slotSize, n));
        _captured[slot] = n;
        _original[slot] = frame.Length;
        _ticks[slot] = ticks;
        // Publishes the slot: the writer reads _head before the slot, so the slot's stores above are ordered first.
        Volatile.Write(ref _head, head + 1);
        return true;
    }

    private void WriteLoop()
    {
        long tail = 0;
        while (true)
        {
            long head = Volatile.Read(ref _head);
            if (tail == head)
            {
                if (_stopping && tail == Volatile.Read(ref _head)) { break; }
                // Nothing queued: look again in a millisecond. The writer's latency does not matter; the producer
                // must not pay for waking it.
                Thread.Sleep(1);
                continue;
            }
            try
            {
                for (; tail < head; tail++)
                {
                    int slot = (int)(tail % _slotCount);
                    _writer.Write(_ticks[slot], _data.AsSpan(slot * _slotSize, _captured[slot]), _original[slot]);
                    Volatile.Write(ref _tail, tail + 1);
                }
            }
            catch (Exception e) when (e is IOException or NotSupportedException or ObjectDisposedException)
            {
                LogWriteFailed(e);
                _writeError = e;
                // Frames taken but never written count as dropped; the producer drops the rest itself.
                Interlocked.Add(ref _dropped, head - tail);
                Volatile.Write(ref _tail, head);
                return;
            }
        }
        try { _writer.Flush(); }
        catch (IOException e) { LogWriteFailed(e); _writeError = e; }
    }

    /// <summary>
    /// Stops taking frames, writes what is queued, flushes and closes the file. Throws if writing failed, which
    /// <see cref="Dispose"/> does not.
    /// </summary>
    /// <exception cref="PacketCaptureException">A write failed (disk full, I/O error); the file holds the records before it.</exception>
    public PacketCaptureStats Complete()
    {
        Dispose();
        return _writeError is { } e ? throw new PacketCaptureException($"writing the capture file failed: {e.Message}", e) : Stats;
    }

    /// <summary>Writes what is queued and closes the file.</summary>
    public void Dispose()
    {
        if (_disposed) { return; }
        _disposed = true;
        _stopping = true;
        _thread.Join();
        try { _writer.Dispose(); }
        catch (IOException e) { LogWriteFailed(e); _writeError ??= e; }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "writing the capture file failed; frames from now on are dropped")]
    private partial void LogWriteFailed(Exception error);
}
