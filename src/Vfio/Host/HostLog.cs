using Microsoft.Extensions.Logging;

namespace Vfio.Host;

/// <summary>The host layer's log messages; every change it makes to the machine is logged at Information.</summary>
internal static partial class HostLog
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Debug, Message = "Writing '{Value}' to {Path}")]
    public static partial void Writing(ILogger logger, string path, string value);

    [LoggerMessage(EventId = 101, Level = LogLevel.Debug, Message = "{Device}: already bound to {Driver}, nothing to do")]
    public static partial void AlreadyBound(ILogger logger, PciAddress device, string driver);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "{Device}: unbinding from {Driver}")]
    public static partial void Unbinding(ILogger logger, PciAddress device, string driver);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "{Device}: binding to {Driver}")]
    public static partial void Binding(ILogger logger, PciAddress device, string driver);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "{Device}: bound to {Driver}")]
    public static partial void Bound(ILogger logger, PciAddress device, string driver);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning,
        Message = "Enabling VFIO No-IOMMU mode: devices bound to vfio-pci without an IOMMU get unrestricted DMA and the kernel will be tainted")]
    public static partial void EnablingNoIommu(ILogger logger);

    [LoggerMessage(EventId = 106, Level = LogLevel.Debug, Message = "Skipping {Entry} in {Folder}: not a PCI address")]
    public static partial void SkippingEntry(ILogger logger, string entry, string folder);

    [LoggerMessage(EventId = 107, Level = LogLevel.Information, Message = "Reserving {Count} hugepages of {PageSize} bytes")]
    public static partial void ReservingHugePages(ILogger logger, int count, ulong pageSize);

    [LoggerMessage(EventId = 108, Level = LogLevel.Warning,
        Message = "Asked for {Requested} hugepages of {PageSize} bytes, the kernel gave {Granted} (memory too fragmented or too small)")]
    public static partial void HugePagesShort(ILogger logger, int requested, ulong pageSize, long granted);

    [LoggerMessage(EventId = 109, Level = LogLevel.Debug, Message = "{Device}: vanished while being listed")]
    public static partial void DeviceVanished(ILogger logger, PciAddress device);

    [LoggerMessage(EventId = 110, Level = LogLevel.Warning,
        Message = "Stopped looking for open files after {Count} fd links; processes past that were not checked")]
    public static partial void OpenFileScanStopped(ILogger logger, int count);

    [LoggerMessage(EventId = 111, Level = LogLevel.Warning, Message = "{Device}: taking it from {Driver} although the host uses it (forced): {Uses}")]
    public static partial void BindForced(ILogger logger, PciAddress device, string driver, string uses);
}
