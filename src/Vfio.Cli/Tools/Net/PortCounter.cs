using System.Diagnostics;
using Vfio.Net;

namespace Vfio.Cli.Tools.Net;

/// <summary>Receives on every queue of a port and frees what arrives, so that the driver's counters count it (testpmd's rxonly mode).</summary>
internal static class PortCounter
{
    /// <summary>Polls every queue of <paramref name="port"/> for <paramref name="duration"/>; returns the packets received.</summary>
    public static long Drain(INetPort port, TimeSpan duration, int burst = 32, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        var buffer = new PacketBuffer[burst];
        long received = 0;
        long start = Stopwatch.GetTimestamp();
        int queues = port.QueuePairCount;
        while (Stopwatch.GetElapsedTime(start) < duration && !cancellationToken.IsCancellationRequested)
        {
            for (int q = 0; q < queues; q++)
            {
                int n = port.RxBurst(q, buffer);
                PacketPool.Free(buffer.AsSpan(0, n));
                received += n;
            }
        }
        return received;
    }
}
