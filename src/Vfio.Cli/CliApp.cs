using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Reflection;
using Vfio.Cli.Commands;
using Vfio.Cli.Output;

namespace Vfio.Cli;

/// <summary>
/// The vfio command, callable in-process: <see cref="Run(IReadOnlyList{string}, TextWriter, TextWriter, CliEnvironment)"/>
/// parses the arguments, runs the command with the given writers and returns the exit code (see <see cref="ExitCodes"/>).
/// It never calls <see cref="Environment.Exit(int)"/> and never writes to <see cref="Console"/> directly.
/// </summary>
public static class CliApp
{
    /// <summary>The text after the root command's help: exit codes and the options meant for tests.</summary>
    internal const string HelpEpilogue = """
        Exit codes:
          0   ok
          1   usage error (unknown command or option, malformed or missing argument such as a BDF);
              for 'doctor': a check failed (the host is not ready)
          2   device or host error (no such device, driver not loaded, group not viable, kernel refused a write,
              fewer hugepages granted than asked for, an NVMe command failed or timed out)
          3   permission or capability missing (run as root, or grant the capability the message names)
          4   No-IOMMU mode refused (device in a No-IOMMU group without --unsafe-noiommu, No-IOMMU mode off,
              or 'noiommu enable' without --unsafe)
          70  internal error (a bug: the stack trace is printed)

        Errors go to standard error as 'vfio: <message>'; with --json a document {"error": {...}} is also printed on
        standard output. For tests and chroots, --sysfs-root, --proc-root, --dev-root DIR and --pci-ids FILE read
        another tree than /sys, /proc, /dev and the system's pci.ids.

        """;

    /// <summary>
    /// The version <c>vfio --version</c> prints: this assembly's informational version, which MinVer computes from the
    /// nearest git tag <c>vX.Y.Z</c> (a clone with no tag gives <c>0.0.0-alpha.0.N</c>, N commits from the root) and the
    /// SDK suffixes with <c>+</c> and the commit id. Read from the command's own assembly, not the entry assembly, so
    /// that the in-process runs of the tests print the same as the installed tool.
    /// </summary>
    internal static string Version { get; } =
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(CliApp).Assembly.GetName().Version?.ToString()
        ?? "unknown";

    /// <summary>Runs the command against the real host, as the vfio executable does.</summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <param name="output">Standard output: tables, or JSON with <c>--json</c>.</param>
    /// <param name="error">Standard error: error messages, warnings, and logs with <c>--verbose</c>.</param>
    /// <returns>The exit code (<see cref="ExitCodes"/>).</returns>
    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error) =>
        Run(args, output, error, CliEnvironment.Default);

    /// <summary>Runs the command in the given environment (tests pass a fake sysfs writer and device opener).</summary>
    /// <param name="args">The arguments, without the program name.</param>
    /// <param name="output">Standard output: tables, or JSON with <c>--json</c>.</param>
    /// <param name="error">Standard error: error messages, warnings, and logs with <c>--verbose</c>.</param>
    /// <param name="environment">Where writes go, where names come from, how devices are opened.</param>
    /// <returns>The exit code (<see cref="ExitCodes"/>).</returns>
    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter error, CliEnvironment environment)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        ArgumentNullException.ThrowIfNull(environment);

        var options = new GlobalOptions();
        var root = BuildCommand(options, parse => new CliContext(parse, options, environment, output, error));
        var parse = root.Parse(args);
        bool json = parse.GetValue(options.Json);

        if (parse.Action is ParseErrorAction)
        {
            foreach (var e in parse.Errors) { error.WriteLine($"vfio: {e.Message}"); }
            error.WriteLine($"Run '{CommandPath(parse)} --help' for usage.");
            if (json)
            {
                var message = string.Join("; ", parse.Errors.Select(e => e.Message));
                WriteError(output, ExitCodes.Usage, "Usage", message, null);
            }
            return ExitCodes.Usage;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration
            {
                Output = output,
                Error = error,
                EnableDefaultExceptionHandler = false,
            });
        }
        catch (Exception e)
        {
            return Report(e, json, parse.GetValue(options.Verbose), output, error);
        }
        finally
        {
            output.Flush();
            error.Flush();
        }
    }

    /// <summary>The command tree. Subcommands to come (nvme, net) are added here.</summary>
    internal static Command BuildCommand(GlobalOptions options, Func<ParseResult, CliContext> context)
    {
        var root = new Command("vfio",
            "Userspace PCI drivers on Linux VFIO: list devices, bind them to vfio-pci, check No-IOMMU mode and hugepages, " +
            "and look inside a device through VFIO.");
        var help = new HelpOption();
        help.Action = new HelpWithEpilogue((HelpAction)help.Action!, root);
        root.Options.Add(help);
        root.Options.Add(new VersionOption { Action = new PrintVersion() });
        foreach (var option in options.All) { root.Options.Add(option); }

        root.Subcommands.Add(ListCommand.Create(context));
        root.Subcommands.Add(BindCommands.CreateBind(context));
        root.Subcommands.Add(BindCommands.CreateUnbind(context));
        root.Subcommands.Add(NoIommuCommand.Create(context));
        root.Subcommands.Add(HugePagesCommand.Create(context));
        root.Subcommands.Add(InfoCommand.Create(context));
        root.Subcommands.Add(DoctorCommand.Create(context));
        root.Subcommands.Add(ServeCommand.Create(context));
        root.Subcommands.Add(NvmeCommands.Create(context));
        root.Subcommands.Add(NetCommands.Create(context));
        return root;
    }

    private static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Add(r.Command.Name);
        }
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>Prints an exception as the command's error and picks its exit code.</summary>
    private static int Report(Exception e, bool json, bool verbose, TextWriter output, TextWriter error)
    {
        (int code, string kind, PciAddress? device) = e switch
        {
            CliException c => (c.ExitCode, c.Kind, c.Device),
            NoIommuNotPermittedException or NoIommuModeDisabledException => (ExitCodes.NoIommuRefused, Kind(e), ((VfioException)e).Device),
            VfioPermissionException or MissingCapabilityException => (ExitCodes.Permission, Kind(e), ((VfioException)e).Device),
            VfioException v => (ExitCodes.DeviceOrHost, Kind(e), v.Device),
            UnauthorizedAccessException => (ExitCodes.Permission, "Permission", (PciAddress?)null),
            _ => (ExitCodes.Internal, "Internal", (PciAddress?)null),
        };

        if (code == ExitCodes.Internal)
        {
            error.WriteLine($"vfio: internal error (a bug; please report it): {e}");
        }
        else
        {
            error.WriteLine($"vfio: {e.Message}");
            if (verbose) { error.WriteLine(e.ToString()); }
        }
        if (json) { WriteError(output, code, kind, e.Message, device); }
        return code;
    }

    private static string Kind(Exception e)
    {
        var name = e.GetType().Name;
        return name.EndsWith("Exception", StringComparison.Ordinal) ? name[..^"Exception".Length] : name;
    }

    private static void WriteError(TextWriter output, int code, string kind, string message, PciAddress? device) =>
        output.WriteLine(System.Text.Json.JsonSerializer.Serialize(
            new ErrorDocumentJson(new ErrorJson(code, kind, message, device?.ToString())), CliJson.Output.ErrorDocumentJson));

    /// <summary>Prints <see cref="Version"/>, whatever else the command line holds.</summary>
    private sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(Version);
            return ExitCodes.Ok;
        }
    }

    /// <summary>The standard help, followed on the root command by the exit codes.</summary>
    private sealed class HelpWithEpilogue(HelpAction inner, Command root) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            int code = inner.Invoke(parseResult);
            if (parseResult.CommandResult.Command == root)
            {
                parseResult.InvocationConfiguration.Output.Write(HelpEpilogue);
            }
            return code;
        }
    }
}
