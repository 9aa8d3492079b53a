using System.Diagnostics;
using Vfio.Net;

namespace Vfio.Cli.Tools.Net;

/// <summary>What a <see cref="PacketGenerator"/> run did.</summary>
/// <param name="Sent">Frames the device took.</param>
/// <param name="Elapsed">Wall time.</param>
/// <param name="InFlight">
/// Of <paramref name="Sent"/>, frames the device still held when the run ended (it had not finished sending them
/// when the time was up; 0 after a run that completed in time).
/// </param>
internal readonly record struct PacketGeneratorResult(long Sent, TimeSpan Elapsed, int InFlight = 0)
{
    /// <summary>Million frames per second: those the device finished sending, over <see cref="Elapsed"/>.</summary>
    public double Mpps => Elapsed.TotalSeconds > 0 ? (Sent - InFlight) / Elapsed.TotalSeconds / 1e6 : 0;
}

/// <summary>
/// Sends numbered <see cref="TestFrames"/> in bursts on one queue of any <see cref="INetPort"/>, like a minimal
/// pktgen. Frames come from the port's pool; a frame the port does not take is retried in the next burst.
/// </summary>
/// <remarks>
/// A run always ends by its time limit: the device takes frames only as fast as the link drains them, and a
/// peer that never empties its receive queue (a QEMU hub port whose other side posts no buffers) stops the
/// transmit queue for good.
/// </remarks>
internal static class PacketGenerator
{
    /// <summary>
    /// Sends <paramref name="count"/> frames of <paramref name="frameSize"/> bytes, sequence numbers from
    /// <paramref name="firstSequence"/> on, in bursts of <paramref name="burst"/>, then waits until the device has
    /// sent them all. An optional <paramref name="pump"/> runs between bursts (e.g. to drain a receiver on the same
    /// thread). The run ends after <paramref name="maxDuration"/> (default 10 minutes) whatever the device did:
    /// then <see cref="PacketGeneratorResult.Sent"/> is below <paramref name="count"/> or
    /// <see cref="PacketGeneratorResult.InFlight"/> is above 0. Frames go out on queue <paramref name="queue"/>.
    /// </summary>
    public static PacketGeneratorResult Send(INetPort port, long count, int frameSize, int burst = 32,
        ulong firstSequence = 0, byte[]? destination = null, Action? pump = null, TimeSpan? maxDuration = null, int queue = 0,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentOutOfRangeException.ThrowIfNegative(queue);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queue, port.QueuePairCount);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        if (maxDuration is { } d && d <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(maxDuration), d, "the time limit must be positive");
        }
        if (frameSize < TestFrames.MinSize || frameSize > Math.Min(TestFrames.MaxSize, port.Pool.DataRoom))
        {
            throw new ArgumentOutOfRangeException(nameof(frameSize), frameSize, $"frame size must be {TestFrames.MinSize}..{Math.Min(TestFrames.MaxSize, port.Pool.DataRoom)}");
        }
        var dst = destination ?? TestFrames.Broadcast;
        var src = TestFrames.MacBytes(port.MacAddress);
        var buffers = new PacketBuffer[burst];
        int pending = 0; // built but not yet taken, at the front of buffers
        long sent = 0;
        ulong next = firstSequence;
        var limit = maxDuration ?? TimeSpan.FromMinutes(10);
        long start = Stopwatch.GetTimestamp();
        int inFlight;
        try
        {
            while (sent < count && Stopwatch.GetElapsedTime(start) < limit)
            {
                cancellationToken.ThrowIfCancellationRequested();
                while (pending < burst && (long)(next - firstSequence) < count && port.Pool.TryAllocate(out var p))
                {
                    TestFrames.Write(p.Room, frameSize, next++, dst, src);
                    p.Length = frameSize;
                    buffers[pending++] = p;
                }
                int taken = port.TxBurst(queue, buffers.AsSpan(0, pending));
                if (taken > 0)
                {
                    buffers.AsSpan(taken, pending - taken).CopyTo(buffers);
                    pending -= taken;
                    sent += taken;
                }
                pump?.Invoke();
            }
            // Taken is not yet sent: closing the port now would reset the device with frames still in its ring.
            while ((inFlight = port.TxInFlight(queue)) > 0 && Stopwatch.GetElapsedTime(start) < limit)
            {
                cancellationToken.ThrowIfCancellationRequested();
                pump?.Invoke();
            }
        }
        finally
        {
            PacketPool.Free(buffers.AsSpan(0, pending));
        }
        return new PacketGeneratorResult(sent, Stopwatch.GetElapsedTime(start), inFlight);
    }
}
