using System.Diagnostics;
using System.Reflection;

namespace Vfio;

/// <summary>
/// Names of the libraries' telemetry: the core library's <see cref="System.Diagnostics.Metrics.Meter"/> ("Vfio": DMA
/// memory and interrupts) and the tags the drivers' meters and activity sources share. Every instrument is named by
/// OpenTelemetry's semantic conventions (lower-case dotted names, UCUM units) and is either observable, read from
/// counts the library keeps anyway, or recorded only while something listens; README "Metrics" lists them all.
/// </summary>
public static class VfioTelemetry
{
    /// <summary>The name of the core library's meter.</summary>
    public const string MeterName = "Vfio";

    /// <summary>Tag on DMA instruments: how the device addresses the memory, <c>physical</c> (No-IOMMU) or <c>iova</c>.</summary>
    public const string DmaAddressingTag = "vfio.dma.addressing";

    /// <summary>Tag on interrupt instruments: the VFIO IRQ index, <c>intx</c>, <c>msi</c>, <c>msix</c>, <c>err</c> or <c>req</c>.</summary>
    public const string IrqIndexTag = "vfio.irq.index";

    /// <summary>Tag naming the PCI function, as <c>dddd:bb:dd.f</c>, on the drivers' instruments and activities.</summary>
    public const string PciAddressTag = "vfio.pci.address";

    /// <summary>
    /// The version a library's meter and activity source carry: the assembly's informational version (MinVer's, with
    /// any +commit suffix left off), or its assembly version when it has none.
    /// </summary>
    public static string? VersionOf(Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        var informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        if (informational is null) { return assembly.GetName().Version?.ToString(); }
        int plus = informational.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? informational : informational[..plus];
    }

    /// <summary>
    /// Starts activity <paramref name="name"/> of <paramref name="source"/> for slow work on the device at
    /// <paramref name="address"/> (bring-up, reset), tagged with <see cref="PciAddressTag"/>; null when no one listens.
    /// </summary>
    public static Activity? StartActivity(ActivitySource source, string name, PciAddress address)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!source.HasListeners()) { return null; }
        var activity = source.StartActivity(name);
        activity?.SetTag(PciAddressTag, address.ToString());
        return activity;
    }

    /// <summary>Marks <paramref name="activity"/> failed with <paramref name="error"/> (OpenTelemetry's error status and <c>error.type</c>).</summary>
    public static void Fail(Activity? activity, Exception error)
    {
        ArgumentNullException.ThrowIfNull(error);
        if (activity is null) { return; }
        activity.SetStatus(ActivityStatusCode.Error, error.Message);
        activity.SetTag("error.type", error.GetType().FullName);
    }
}
