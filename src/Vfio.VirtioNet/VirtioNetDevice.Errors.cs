using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Vfio.Devices;

namespace Vfio.VirtioNet;

/// <summary>
/// PCIe errors the device reports (<see cref="IPciDevice.ErrorReported"/>, the VFIO error interrupt): an uncorrectable
/// one stops the port until <see cref="RecoverFromError"/>, a correctable one is counted.
/// </summary>
public sealed partial class VirtioNetDevice
{
    private volatile PciErrorReport? _deviceError;
    private long _correctableErrors, _uncorrectableErrors;
    private bool _watchingErrors;

    /// <summary>Correctable PCIe errors the device reported (counted only: the hardware corrected them).</summary>
    public long CorrectableErrorCount => Interlocked.Read(ref _correctableErrors);

    /// <summary>Uncorrectable PCIe errors the device reported since open.</summary>
    public long UncorrectableErrorCount => Interlocked.Read(ref _uncorrectableErrors);

    /// <summary>The uncorrectable error that stopped the port, until <see cref="RecoverFromError"/>; null otherwise.</summary>
    public PciErrorReport? DeviceError => _deviceError;

    /// <summary>
    /// Raised on the thread that observed the error once the port has stopped for an uncorrectable error: the
    /// application's cue to stop its datapath and call <see cref="RecoverFromError"/> from that datapath's thread.
    /// </summary>
    public event EventHandler<PciErrorReport>? DeviceErrorStopped;

    private void WatchErrors()
    {
        Device.ErrorReported += OnDeviceError;
        _watchingErrors = true;
    }

    private void StopWatchingErrors()
    {
        if (!_watchingErrors) { return; }
        _watchingErrors = false;
        Device.ErrorReported -= OnDeviceError;
    }

    /// <summary>
    /// An uncorrectable error stops the port: bus mastering off, so the device fetches no descriptor and moves no
    /// packet (PCI Local Bus 3.0 §6.2.2), and <see cref="Receive"/> and <see cref="Transmit"/> throw
    /// <see cref="VirtioNetDeviceErrorException"/>. The packets the rings hold (receive buffers, unsent frames) stay
    /// there, not trusted, until <see cref="RecoverFromError"/> returns them to their pools.
    /// </summary>
    private void OnDeviceError(object? sender, PciErrorReport report)
    {
        if (!report.IsUncorrectable)
        {
            Interlocked.Increment(ref _correctableErrors);
            LogCorrectableError(_logger, Device.Address, report.Aer?.ToString() ?? "no AER status");
            return;
        }
        Interlocked.Increment(ref _uncorrectableErrors);
        _deviceError = report;
        try
        {
            Device.Config.BusMaster = false;
        }
        catch (VfioException e)
        {
            LogTeardownProblem(_logger, Device.Address, $"clearing bus master after the error: {e.Message}");
        }
        LogStoppedForError(_logger, Device.Address, report.ToString());
        DeviceErrorStopped?.Invoke(this, report);
    }

    /// <summary>
    /// Recovers after an uncorrectable PCIe error: clears the error status the device logged in its AER capability
    /// (PCIe Base 6.0 §7.8.4.2 and §7.8.4.5, RW1C), then resets the device and brings it up again as
    /// <see cref="Reset"/> does (bus mastering back on, queues re-created, receive buffers posted anew). Packets the
    /// rings held return to their pools unsent. Call it from the thread that runs the port's datapath, like
    /// <see cref="Reset"/>. Safe to call when no error is pending (it is then a plain <see cref="Reset"/>).
    /// </summary>
    public void RecoverFromError()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var report = _deviceError;
        try
        {
            Device.Config.FindAer()?.ClearLogged();
        }
        catch (VfioException e)
        {
            LogTeardownProblem(_logger, Device.Address, $"clearing the AER status: {e.Message}");
        }
        Reset();
        _deviceError = null;
        LogRecovered(_logger, Device.Address, report?.Severity.ToString() ?? "no");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDeviceError(PciErrorReport report) => throw new VirtioNetDeviceErrorException(Device.Address, report);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: correctable PCIe error reported ({Aer}); counted, no recovery needed")]
    private static partial void LogCorrectableError(ILogger logger, PciAddress device, string aer);

    [LoggerMessage(Level = LogLevel.Error, Message = "{Device}: uncorrectable PCIe error ({Report}); virtio-net port stopped until RecoverFromError")]
    private static partial void LogStoppedForError(ILogger logger, PciAddress device, string report);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Device}: virtio-net port recovered ({Severity} error was pending)")]
    private static partial void LogRecovered(ILogger logger, PciAddress device, string severity);
}

/// <summary>
/// The device reported an uncorrectable PCIe error (<see cref="IPciDevice.ErrorReported"/>): the port stopped (bus
/// mastering off) and receives and transmits nothing until <see cref="VirtioNetDevice.RecoverFromError"/>.
/// </summary>
public sealed class VirtioNetDeviceErrorException(PciAddress device, PciErrorReport report)
    : VfioException($"the device reported an uncorrectable PCIe error ({report.Severity}{(report.Aer is { } aer ? $"; {aer}" : "")}); the port is stopped",
        device, "call VirtioNetDevice.RecoverFromError() to reset the device and bring the port up again")
{
    /// <summary>The error as the device reported it.</summary>
    public PciErrorReport Report { get; } = report;
}
