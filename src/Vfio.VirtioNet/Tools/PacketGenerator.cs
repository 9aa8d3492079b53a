using System.Diagnostics;

namespace Vfio.VirtioNet.Tools;

/// <summary>What a <see cref="PacketGenerator"/> run did.</summary>
/// <param name="Sent">Frames the device took.</param>
/// <param name="Elapsed">Wall time.</param>
public readonly record struct PacketGeneratorResult(long Sent, TimeSpan Elapsed)
{
    /// <summary>Million frames per second.</summary>
    public double Mpps => Elapsed.TotalSeconds > 0 ? Sent / Elapsed.TotalSeconds / 1e6 : 0;
}

/// <summary>
/// Sends numbered <see cref="TestFrames"/> in bursts, like a minimal pktgen. Frames come from the device's pool;
/// a frame the device does not take is retried in the next burst.
/// </summary>
public static class PacketGenerator
{
    /// <summary>
    /// Sends <paramref name="count"/> frames of <paramref name="frameSize"/> bytes, sequence numbers from
    /// <paramref name="firstSequence"/> on, in bursts of <paramref name="burst"/>. An optional
    /// <paramref name="pump"/> runs between bursts (e.g. to drain a receiver on the same thread).
    /// </summary>
    public static PacketGeneratorResult Send(VirtioNetDevice port, long count, int frameSize, int burst = 32,
        ulong firstSequence = 0, byte[]? destination = null, Action? pump = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
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
        var deadline = timeout ?? TimeSpan.FromMinutes(10);
        long start = Stopwatch.GetTimestamp();
        try
        {
            while (sent < count)
            {
                cancellationToken.ThrowIfCancellationRequested();
                while (pending < burst && (long)(next - firstSequence) < count && port.Pool.TryAllocate(out var p))
                {
                    TestFrames.Write(p.Room, frameSize, next++, dst, src);
                    p.Length = frameSize;
                    buffers[pending++] = p;
                }
                int taken = port.Transmit(buffers.AsSpan(0, pending));
                if (taken > 0)
                {
                    buffers.AsSpan(taken, pending - taken).CopyTo(buffers);
                    pending -= taken;
                    sent += taken;
                }
                pump?.Invoke();
                if (taken == 0 && Stopwatch.GetElapsedTime(start) > deadline)
                {
                    throw new TimeoutException($"pktgen: the device took {sent} of {count} frames in {deadline.TotalSeconds} s");
                }
            }
        }
        finally
        {
            PacketPool.Free(buffers.AsSpan(0, pending));
        }
        return new PacketGeneratorResult(sent, Stopwatch.GetElapsedTime(start));
    }
}
