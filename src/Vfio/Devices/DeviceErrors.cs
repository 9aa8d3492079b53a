namespace Vfio.Devices;

/// <summary>How serious a reported PCIe error is (PCIe Base 6.0 §6.2.2).</summary>
public enum PciErrorSeverity
{
    /// <summary>Corrected by the hardware; nothing was lost and no recovery is needed (§6.2.2.1).</summary>
    Correctable,
    /// <summary>
    /// Uncorrectable, non-fatal: a transaction was lost or corrupted but the link is intact (§6.2.2.2.2). The driver
    /// stops trusting work in flight and re-initialises the device.
    /// </summary>
    NonFatal,
    /// <summary>Uncorrectable and fatal: the link or the device is unreliable (§6.2.2.2.1); the host may reset the link.</summary>
    Fatal,
}

/// <summary>One error the device's error interrupt reported, with the AER registers as read when it arrived.</summary>
/// <param name="device">The device.</param>
/// <param name="severity">What kind of error.</param>
/// <param name="aer">The AER registers read when the signal arrived; null when the device has no AER capability or could not be read.</param>
/// <param name="signals">How many signals this report stands for (an eventfd coalesces signals that arrive before it is read).</param>
public sealed class PciErrorReport(PciAddress device, PciErrorSeverity severity, AerStatus? aer, ulong signals = 1) : EventArgs
{
    /// <summary>The device.</summary>
    public PciAddress Device { get; } = device;

    /// <summary>What kind of error.</summary>
    public PciErrorSeverity Severity { get; } = severity;

    /// <summary>
    /// The AER registers read when the signal arrived; null without an AER capability. The host's AER driver may
    /// already have cleared the status it handled (Linux clears it once its recovery is done), so the status can be
    /// empty even though an error was reported.
    /// </summary>
    public AerStatus? Aer { get; } = aer;

    /// <summary>How many signals this report stands for.</summary>
    public ulong Signals { get; } = signals;

    /// <summary>True for <see cref="PciErrorSeverity.NonFatal"/> and <see cref="PciErrorSeverity.Fatal"/>.</summary>
    public bool IsUncorrectable => Severity != PciErrorSeverity.Correctable;

    /// <summary>
    /// The severity of an error interrupt given the AER registers read with it: fatal when a logged unmasked
    /// uncorrectable error has fatal severity, non-fatal for any other uncorrectable error, and non-fatal too when
    /// nothing is logged, since Linux signals the error interrupt only for uncorrectable errors (vfio-pci's
    /// <c>error_detected</c> handler) and may have cleared the status by the time it is read. Correctable only when
    /// the backend says the signal was for a correctable error and no uncorrectable error is logged.
    /// </summary>
    public static PciErrorSeverity Classify(AerStatus? aer, bool correctableSignal = false)
    {
        if (aer is not null)
        {
            if ((aer.FatalErrors & ~aer.UncorrectableMask) != AerUncorrectableErrors.None) { return PciErrorSeverity.Fatal; }
            if (aer.HasUncorrectable) { return PciErrorSeverity.NonFatal; }
        }
        return correctableSignal ? PciErrorSeverity.Correctable : PciErrorSeverity.NonFatal;
    }

    /// <inheritdoc />
    public override string ToString() => $"{Device}: {Severity} error{(Signals > 1 ? $" (x{Signals})" : "")}{(Aer is null ? "" : $"; {Aer}")}";
}

/// <summary>Whether a device reports its errors (<see cref="IPciDevice.ErrorReported"/>), and if not, why.</summary>
/// <param name="IsAvailable">True when <see cref="IPciDevice.ErrorReported"/> can be raised.</param>
/// <param name="Detail">How errors arrive, or why they cannot.</param>
public readonly record struct ErrorReportingSupport(bool IsAvailable, string Detail)
{
    /// <summary>Not available, for <paramref name="reason"/>.</summary>
    public static ErrorReportingSupport Unavailable(string reason) => new(false, reason);

    /// <inheritdoc />
    public override string ToString() => IsAvailable ? $"available: {Detail}" : $"not available: {Detail}";
}
