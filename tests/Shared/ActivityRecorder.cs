using System.Diagnostics;

namespace Vfio.Tests.Shared;

/// <summary>An <see cref="ActivityListener"/> that samples every activity of the sources named and keeps those that stopped.</summary>
internal sealed class ActivityRecorder : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly List<Activity> _stopped = [];

    public ActivityRecorder(params string[] sources)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = s => sources.Contains(s.Name),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (_stopped) { _stopped.Add(a); } },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>The stopped activities tagged with the PCI address <paramref name="address"/>, in the order they stopped.</summary>
    public IReadOnlyList<Activity> Of(PciAddress address)
    {
        lock (_stopped) { return [.. _stopped.Where(a => Equals(a.GetTagItem(VfioTelemetry.PciAddressTag), address.ToString()))]; }
    }

    public void Dispose() => _listener.Dispose();
}
