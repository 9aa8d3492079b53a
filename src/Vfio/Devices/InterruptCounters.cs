using System.Diagnostics.Metrics;
using Vfio.Dma;

namespace Vfio.Devices;

/// <summary>
/// "vfio.interrupts" on the core meter: interrupts the process consumed from VFIO eventfds, by IRQ index, summed over
/// the eventfds' own counts (<see cref="Vfio.Linux.EventFd.TotalSignals"/>) of every open interrupt set, plus those of
/// sets already closed, so the counter never goes back. Nothing is counted on the interrupt path beyond what the
/// eventfd counts anyway.
/// </summary>
internal static class InterruptCounters
{
    private static readonly Lock s_lock = new();
    private static readonly HashSet<EventFdInterruptSet> s_open = [];
    private static readonly long[] s_closed = new long[5];
    private static readonly string[] s_names = ["intx", "msi", "msix", "err", "req"];

    static InterruptCounters()
    {
        DmaCounters.Meter.CreateObservableCounter("vfio.interrupts", Observe, "{interrupt}",
            "Interrupts delivered through VFIO eventfds and consumed by the process");
    }

    /// <summary>The set's vectors deliver interrupts from now on.</summary>
    public static void Track(EventFdInterruptSet set)
    {
        lock (s_lock) { s_open.Add(set); }
    }

    /// <summary>The set is closed: its count joins the closed total of its index.</summary>
    public static void Untrack(EventFdInterruptSet set)
    {
        lock (s_lock)
        {
            if (s_open.Remove(set) && (uint)set.Index < (uint)s_closed.Length) { s_closed[(int)set.Index] += set.TotalSignals; }
        }
    }

    private static List<Measurement<long>> Observe()
    {
        var totals = new long[s_closed.Length];
        lock (s_lock)
        {
            s_closed.CopyTo(totals, 0);
            foreach (var set in s_open)
            {
                if ((uint)set.Index < (uint)totals.Length) { totals[(int)set.Index] += set.TotalSignals; }
            }
        }
        var measurements = new List<Measurement<long>>(totals.Length);
        for (int i = 0; i < totals.Length; i++)
        {
            if (totals[i] > 0) { measurements.Add(new(totals[i], new KeyValuePair<string, object?>(VfioTelemetry.IrqIndexTag, s_names[i]))); }
        }
        return measurements;
    }
}
