using Vfio.Spec.Nvme;
using Vfio.Devices;

namespace Vfio.Nvme;

/// <summary>What a command was, for error reports: the queue, the identifier and the parameters that matter.</summary>
/// <param name="QueueId">Submission queue (0: admin).</param>
/// <param name="CommandId">Command identifier.</param>
/// <param name="Opcode">Opcode.</param>
/// <param name="Nsid">Namespace ID (0 when none).</param>
/// <param name="StartingLba">First LBA, for commands on an LBA range.</param>
/// <param name="BlockCount">Blocks in the range (0 when none).</param>
public readonly record struct NvmeCommandInfo(int QueueId, ushort CommandId, byte Opcode, uint Nsid, ulong StartingLba, int BlockCount)
{
    /// <summary>True for admin commands.</summary>
    public bool IsAdmin => QueueId == 0;

    /// <summary>The opcode's name.</summary>
    public string OpcodeName => IsAdmin
        ? Enum.IsDefined((AdminOpcode)Opcode) ? ((AdminOpcode)Opcode).ToString() : $"admin 0x{Opcode:x2}"
        : Enum.IsDefined((NvmOpcode)Opcode) ? ((NvmOpcode)Opcode).ToString() : $"I/O 0x{Opcode:x2}";

    /// <summary>Describes a command's identity from its submission entry.</summary>
    public static NvmeCommandInfo From(int queueId, in NvmeCommand command)
    {
        bool ranged = queueId != 0 && (NvmOpcode)command.Opcode is NvmOpcode.Read or NvmOpcode.Write or NvmOpcode.WriteZeroes or NvmOpcode.Compare;
        return new(queueId, command.CommandId, command.Opcode, command.Nsid,
            ranged ? command.StartingLba : 0, ranged ? command.BlockCount : 0);
    }

    /// <inheritdoc />
    public override string ToString()
    {
        var text = $"{OpcodeName} (opcode 0x{Opcode:x2}, cid {CommandId}, queue {QueueId}";
        if (Nsid != 0) { text += $", nsid {Nsid}"; }
        if (BlockCount != 0) { text += $", LBA {StartingLba}..{StartingLba + (ulong)BlockCount - 1}"; }
        return text + ")";
    }
}

/// <summary>Base of the NVMe driver's errors.</summary>
public class NvmeException : VfioException
{
    /// <summary>Creates an exception about the controller at <paramref name="device"/>.</summary>
    public NvmeException(string message, PciAddress? device, string? hint = null) : base(message, device, hint) { }
}

/// <summary>
/// The controller completed a command with an error status (NVMe 1.4 §4.6.1). Carries the status (type, code,
/// DNR, More) and what the command was.
/// </summary>
public sealed class NvmeCommandException : NvmeException
{
    /// <summary>Creates the exception.</summary>
    public NvmeCommandException(NvmeCommandInfo command, NvmeStatus status, PciAddress? device)
        : base($"{command} failed: {status}", device,
            status.DoNotRetry ? "the controller says the same command would fail again (DNR)" : null)
    {
        Command = command;
        Status = status;
    }

    /// <summary>The command that failed.</summary>
    public NvmeCommandInfo Command { get; }

    /// <summary>The completion status.</summary>
    public NvmeStatus Status { get; }

    /// <summary>Status code type.</summary>
    public StatusCodeType StatusCodeType => Status.Type;

    /// <summary>Status code.</summary>
    public byte StatusCode => Status.Code;

    /// <summary>Do Not Retry.</summary>
    public bool DoNotRetry => Status.DoNotRetry;

    /// <summary>More information in the Error Information log.</summary>
    public bool More => Status.More;
}

/// <summary>
/// The controller reported a fatal error (CSTS.CFS, NVMe 1.4 §3.1.6) or stopped responding. Queues are unusable
/// until <see cref="NvmeController.Reset"/> re-initialises the controller.
/// </summary>
public sealed class NvmeControllerFatalException : NvmeException
{
    /// <summary>Creates the exception.</summary>
    public NvmeControllerFatalException(string message, uint controllerStatus, PciAddress? device)
        : base($"{message} (CSTS 0x{controllerStatus:x8})", device, "call NvmeController.Reset() to re-initialise the controller and its queues")
    {
        ControllerStatus = controllerStatus;
    }

    /// <summary>CSTS as read when the failure was seen.</summary>
    public uint ControllerStatus { get; }
}

/// <summary>A command did not complete in time. The queue is faulted until the controller is reset.</summary>
public sealed class NvmeTimeoutException : NvmeException
{
    /// <summary>Creates the exception.</summary>
    public NvmeTimeoutException(NvmeCommandInfo command, TimeSpan timeout, PciAddress? device)
        : base($"{command} did not complete within {timeout.TotalMilliseconds} ms", device, "call NvmeController.Reset() to recover")
    {
        Command = command;
        Timeout = timeout;
    }

    /// <summary>The command that timed out.</summary>
    public NvmeCommandInfo Command { get; }

    /// <summary>How long the driver waited.</summary>
    public TimeSpan Timeout { get; }

}

/// <summary>
/// The controller was reset (<see cref="NvmeController.Reset"/>) while the command was in flight: the reset
/// disabled the controller, which ends every command without a completion (NVMe 1.4 §3.1.5). The command may or
/// may not have taken effect: a write's blocks hold either the old or the new data. The queue works again once
/// the reset finished; retry the operation.
/// </summary>
public sealed class NvmeCommandAbortedException : NvmeException
{
    /// <summary>Creates the exception.</summary>
    public NvmeCommandAbortedException(NvmeCommandInfo command, PciAddress? device)
        : base($"{command} was aborted by a controller reset while in flight", device,
            "the command may or may not have executed; retry it (the controller accepts I/O again once the reset completed)")
    {
        Command = command;
    }

    /// <summary>The command that was in flight.</summary>
    public NvmeCommandInfo Command { get; }
}

/// <summary>
/// The device reported an uncorrectable PCIe error (its error interrupt, <see cref="Devices.IPciDevice.ErrorReported"/>):
/// the controller stopped (disabled, bus mastering off), work in flight ended with this exception and new work gets
/// it too, until the application calls <see cref="NvmeController.RecoverFromError"/>. A write in flight may or may
/// not have reached the media; a read's data is not to be trusted.
/// </summary>
public sealed class NvmeDeviceErrorException : NvmeException
{
    /// <summary>Creates the exception.</summary>
    public NvmeDeviceErrorException(PciErrorReport report, NvmeCommandInfo? command)
        : base($"{(command is { } c ? $"{c} was in flight when " : "")}the device reported an uncorrectable PCIe error ({report.Severity}{(report.Aer is { } aer ? $"; {aer}" : "")})",
            report.Device, "call NvmeController.RecoverFromError() to reset the controller and re-create its queues, then retry")
    {
        Report = report;
        Command = command;
    }

    /// <summary>The error as the device reported it.</summary>
    public PciErrorReport Report { get; }

    /// <summary>The command that was in flight, or null for work submitted after the error.</summary>
    public NvmeCommandInfo? Command { get; }
}
