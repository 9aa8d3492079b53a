using System.CommandLine;

namespace Vfio.Cli.Commands;

/// <summary>
/// How every <c>vfio nvme</c> command names its controller: a PCI address (or a socket path with a <c>/</c>) as
/// the DEVICE argument, or <c>--socket PATH</c> for a vfio-user NVMe target such as <c>vfio serve nvme</c>. Exactly one
/// of the two; anything else is a usage error.
/// </summary>
internal sealed class NvmeTarget
{
    public NvmeTarget()
    {
        Socket = new Option<string?>("--socket")
        {
            Description = "Act on the vfio-user NVMe target listening on this UNIX socket (e.g. `vfio serve nvme --socket PATH`) " +
                "instead of a PCI address",
            Recursive = true,
            HelpName = "PATH",
        };
        Socket.Validators.Add(r =>
        {
            if (Arguments.TryGet(r, out string? path) && string.IsNullOrWhiteSpace(path)) { r.AddError("--socket needs the path of a UNIX socket"); }
        });
    }

    /// <summary>The recursive <c>--socket</c> option, added once to <c>vfio nvme</c>.</summary>
    public Option<string?> Socket { get; }

    /// <summary>A DEVICE argument for one command, optional because <c>--socket</c> may name the controller instead.</summary>
    public Argument<DeviceTarget> Device(Command command)
    {
        var device = Arguments.Device();
        device.Arity = ArgumentArity.ZeroOrOne;
        command.Arguments.Add(device);
        command.Validators.Add(r =>
        {
            bool named = r.GetResult(device) is { Tokens.Count: > 0 };
            bool socket = r.GetResult(Socket) is not null;
            if (named && socket) { r.AddError("name the controller once: a DEVICE argument or --socket PATH, not both"); }
            else if (!named && !socket) { r.AddError("name the controller: a PCI address (DEVICE) or --socket PATH"); }
        });
        return device;
    }

    /// <summary>The controller the command line named (validated: exactly one of the two ways).</summary>
    public DeviceTarget Get(ParseResult parse, Argument<DeviceTarget> device) =>
        parse.GetValue(Socket) is { } path ? DeviceTarget.Socket(path) : parse.GetValue(device);
}
