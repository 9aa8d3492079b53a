using System.CommandLine;

namespace Vfio.Cli;

/// <summary>Options every command accepts (they are recursive: they may follow the subcommand).</summary>
internal sealed class GlobalOptions
{
    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Print a JSON document on standard output instead of tables (shapes are stable; see the README)",
        Recursive = true,
    };

    public Option<bool> Verbose { get; } = new("--verbose", "-v")
    {
        Description = "Log each step (every sysfs write) to standard error, and show stack traces of errors",
        Recursive = true,
    };

    // The roots let tests (and tools looking into a chroot or a copy of a machine's tree) point the command at another
    // tree. They are hidden from help, documented in the README and the help epilogue.
    public Option<string> SysfsRoot { get; } = new("--sysfs-root")
    {
        Description = "Read sysfs from this folder instead of /sys (for tests)",
        DefaultValueFactory = _ => "/sys",
        Recursive = true,
        Hidden = true,
        HelpName = "DIR",
    };

    public Option<string> ProcRoot { get; } = new("--proc-root")
    {
        Description = "Read procfs from this folder instead of /proc (for tests)",
        DefaultValueFactory = _ => "/proc",
        Recursive = true,
        Hidden = true,
        HelpName = "DIR",
    };

    public Option<string> DevRoot { get; } = new("--dev-root")
    {
        Description = "Look for device nodes in this folder instead of /dev (for tests)",
        DefaultValueFactory = _ => "/dev",
        Recursive = true,
        Hidden = true,
        HelpName = "DIR",
    };

    public Option<string?> PciIds { get; } = new("--pci-ids")
    {
        Description = "Read vendor and device names from this pci.ids file",
        Recursive = true,
        Hidden = true,
        HelpName = "FILE",
    };

    public IEnumerable<Option> All => [Json, Verbose, SysfsRoot, ProcRoot, DevRoot, PciIds];
}
