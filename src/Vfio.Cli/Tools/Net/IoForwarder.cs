using System.Diagnostics;
using System.Runtime.CompilerServices;
using Vfio.Net;

namespace Vfio.Cli.Tools.Net;

/// <summary>What an <see cref="IoForwarder"/> run did.</summary>
/// <param name="AToB">Packets received on port A and sent on port B.</param>
/// <param name="BToA">Packets received on port B and sent on port A.</param>
/// <param name="Dropped">Received packets the other port did not take (freed).</param>
/// <param name="Elapsed">Time the loop ran.</param>
/// <param name="SteadyPackets">Packets forwarded after the warm-up interval.</param>
/// <param name="SteadyElapsed">Time after the warm-up interval.</param>
/// <param name="Rounds">Loop rounds (each polls both ports once).</param>
/// <param name="TxFirstPackets">Tx-first frames the two ports took (what circulates at the start).</param>
internal readonly record struct ForwardResult(long AToB, long BToA, long Dropped, TimeSpan Elapsed, long SteadyPackets, TimeSpan SteadyElapsed, long Rounds,
    long TxFirstPackets = 0)
{
    /// <summary>Packets forwarded in both directions.</summary>
    public long Forwarded => AToB + BToA;
    /// <summary>Million packets per second over the whole run, both directions together.</summary>
    public double Mpps => Elapsed.TotalSeconds > 0 ? Forwarded / Elapsed.TotalSeconds / 1e6 : 0;
    /// <summary>Million packets per second after warm-up (JIT, rings filling), both directions together.</summary>
    public double SteadyMpps => SteadyElapsed.TotalSeconds > 0 ? SteadyPackets / SteadyElapsed.TotalSeconds / 1e6 : Mpps;
}

/// <summary>
/// DPDK testpmd's "io" forwarding mode between two ports: receive a burst on one port, transmit it unchanged on
/// the other, both ways, on one thread; with several queue pairs, queue q of one port feeds queue q of the other.
/// Nothing circulates between two ports that only forward, so the loop starts with a tx-first burst of test frames
/// on each port (testpmd --tx-first). Written against <see cref="INetPort"/> only: the same loop runs on any two
/// ports, of one driver or two (one interface call per burst, none per packet).
/// </summary>
internal static class IoForwarder
{
    /// <summary>
    /// Runs the loop for <paramref name="duration"/> (or until cancelled) with bursts of <paramref name="burst"/>.
    /// <paramref name="warmup"/> is left out of <see cref="ForwardResult.SteadyMpps"/>. <paramref name="queues"/>
    /// queue pairs are forwarded (default 1; at most the smaller <see cref="INetPort.QueuePairCount"/>).
    /// <paramref name="flows"/> above 0 makes the tx-first frames UDP/IPv4 of that many flows
    /// (<see cref="TestFrames.WriteUdp"/>), which a port with RSS spreads over its receive queues (testpmd
    /// --txonly-multi-flow); 0 sends the EtherType 0x88B5 test frames, which RSS leaves on queue 0.
    /// <paramref name="loopStarting"/>, when given, is called after the tx-first bursts, just before the loop.
    /// <paramref name="txFirstBursts"/> bursts go out on each queue of each port first (testpmd's
    /// <c>start tx_first N</c>): with the transmit ring's size in flight the rings stay full, as a loaded link's are.
    /// </summary>
    public static ForwardResult Run(INetPort a, INetPort b, TimeSpan duration, int burst = 32, bool txFirst = true,
        int txFirstFrameSize = 64, TimeSpan? warmup = null, int flushAfterIdleRounds = 1, int queues = 1, CancellationToken cancellationToken = default,
        int flows = 0, Action? loopStarting = null, int txFirstBursts = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(flows);
        ArgumentOutOfRangeException.ThrowIfLessThan(txFirstBursts, 1);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queues, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(queues, Math.Min(a.QueuePairCount, b.QueuePairCount));
        long inFlight = 0;
        if (txFirst)
        {
            for (int k = 0; k < txFirstBursts; k++)
            {
                for (int q = 0; q < queues; q++)
                {
                    inFlight += TxFirst(a, q, burst, k, txFirstFrameSize, TestFrames.MacBytes(b.MacAddress), flows);
                    inFlight += TxFirst(b, q, burst, k, txFirstFrameSize, TestFrames.MacBytes(a.MacAddress), flows);
                }
            }
            // With batched doorbells (a threshold above one burst) the last tx-first frames would wait for the loop's first idle round.
            for (int q = 0; q < queues; q++)
            {
                a.FlushTx(q);
                b.FlushTx(q);
            }
        }
        var buffer = new PacketBuffer[burst];
        loopStarting?.Invoke();
        return Loop(a, b, queues, buffer, duration, warmup ?? TimeSpan.Zero, Math.Max(1, flushAfterIdleRounds), cancellationToken)
            with { TxFirstPackets = inFlight };
    }

    // One tx-first burst (the k-th on this queue); returns the frames the port took. What the pool or the ring could
    // not give or take is not an error: fewer frames circulate, and the result says how many.
    private static int TxFirst(INetPort port, int queue, int burst, int k, int frameSize, byte[] destination, int flows)
    {
        var src = TestFrames.MacBytes(port.MacAddress);
        var frames = new PacketBuffer[burst];
        int n = port.Pool.Allocate(frames);
        for (int i = 0; i < n; i++)
        {
            ulong sequence = (ulong)k * (ulong)burst + (ulong)i;
            if (flows > 0) { TestFrames.WriteUdp(frames[i].Room, frameSize, sequence, destination, src, (queue * burst + (int)sequence) % flows); }
            else { TestFrames.Write(frames[i].Room, frameSize, sequence, destination, src); }
            frames[i].Length = frameSize;
        }
        int taken = port.TxBurst(queue, frames.AsSpan(0, n));
        PacketPool.Free(frames.AsSpan(taken, n - taken));
        return taken;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ForwardResult Loop(INetPort a, INetPort b, int queues, PacketBuffer[] buffer, TimeSpan duration, TimeSpan warmup,
        int flushAfterIdleRounds, CancellationToken cancellationToken)
    {
        long aToB = 0, bToA = 0, dropped = 0;
        long start = Stopwatch.GetTimestamp();
        // The loop reads the coarse clock (CLOCK_MONOTONIC_COARSE through the vDSO: a memory read, no clock
        // hardware), and only every 256 rounds: in a guest whose clocksource is emulated (HPET, ACPI PM timer) a
        // precise clock read is a trap into the hypervisor, and that costs more than a forwarding round.
        long startMs = Environment.TickCount64;
        long endMs = startMs + (long)duration.TotalMilliseconds;
        long warmEndMs = startMs + (long)warmup.TotalMilliseconds;
        long warmCount = -1, warmAt = 0;
        var span = buffer.AsSpan();
        uint rounds = 0;
        int idle = 0;
        while (true)
        {
            int m = 0;
            for (int q = 0; q < queues; q++)
            {
                int n = a.RxBurst(q, span);
                m |= n;
                if (n > 0)
                {
                    int sent = b.TxBurst(q, span[..n]);
                    aToB += sent;
                    if (sent < n) { dropped += n - sent; PacketPool.Free(span[sent..n]); }
                }
                n = b.RxBurst(q, span);
                m |= n;
                if (n > 0)
                {
                    int sent = a.TxBurst(q, span[..n]);
                    bToA += sent;
                    if (sent < n) { dropped += n - sent; PacketPool.Free(span[sent..n]); }
                }
            }
            // Nothing arrived for a while: ring the doorbells that batching held back (a no-op with the default
            // threshold of 1, where TxBurst rang them already).
            if (m == 0 && ++idle >= flushAfterIdleRounds)
            {
                idle = 0;
                for (int q = 0; q < queues; q++)
                {
                    a.FlushTx(q);
                    b.FlushTx(q);
                }
            }
            if ((++rounds & 255) == 0)
            {
                long nowMs = Environment.TickCount64;
                if (warmCount < 0 && nowMs >= warmEndMs) { warmCount = aToB + bToA; warmAt = Stopwatch.GetTimestamp(); }
                if (nowMs >= endMs || cancellationToken.IsCancellationRequested) { break; }
            }
        }
        long now = Stopwatch.GetTimestamp();
        if (warmCount < 0) { warmCount = 0; warmAt = start; }
        long total = aToB + bToA;
        return new ForwardResult(aToB, bToA, dropped, Stopwatch.GetElapsedTime(start, now),
            total - warmCount, Stopwatch.GetElapsedTime(warmAt, now), rounds);
    }
}
