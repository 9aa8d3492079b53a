using System.CommandLine;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using Vfio.Cli.Output;
using Vfio.Host;

namespace Vfio.Cli;

/// <summary>Everything one command invocation needs: its output writers, the parsed global options, and the host.</summary>
internal sealed class CliContext
{
    private IAnsiConsole? _console;
    private PciIds? _pciIds;
    private PciHost? _host;

    public CliContext(ParseResult parse, GlobalOptions options, CliEnvironment environment, TextWriter output, TextWriter error)
    {
        Environment = environment;
        Output = output;
        Error = error;
        Json = parse.GetValue(options.Json);
        Verbose = parse.GetValue(options.Verbose);
        SysfsRoot = parse.GetValue(options.SysfsRoot) ?? "/sys";
        ProcRoot = parse.GetValue(options.ProcRoot) ?? "/proc";
        DevRoot = parse.GetValue(options.DevRoot) ?? "/dev";
        PciIdsPath = parse.GetValue(options.PciIds);
        LoggerFactory = new ErrorLoggerFactory(error, Verbose ? LogLevel.Debug : LogLevel.Warning);
    }

    public CliEnvironment Environment { get; }
    public TextWriter Output { get; }
    public TextWriter Error { get; }
    public bool Json { get; }
    public bool Verbose { get; }
    public string SysfsRoot { get; }
    public string ProcRoot { get; }
    public string DevRoot { get; }
    public string? PciIdsPath { get; }
    public ILoggerFactory LoggerFactory { get; }

    /// <summary>The host over the chosen roots, writing through the environment's writer.</summary>
    public PciHost Host => _host ??=
        new PciHost(SysfsRoot, ProcRoot, DevRoot, LoggerFactory.CreateLogger<PciHost>(), Environment.SysfsWriter);

    /// <summary>The PCI ID database: <c>--pci-ids</c>, else the first system file that exists.</summary>
    public PciIds PciIds => _pciIds ??= PciIdsPath is { } path ? PciIds.Find([path]) : PciIds.Find(Environment.PciIdsPaths);

    /// <summary>Tables and text for people, on <see cref="Output"/>.</summary>
    public IAnsiConsole Console => _console ??= CreateConsole();

    /// <summary>
    /// A console for live displays (progress bars) when standard output is a terminal that understands escape
    /// sequences; null otherwise, and callers print plain lines instead.
    /// </summary>
    public IAnsiConsole? InteractiveConsole
    {
        get
        {
            if (!Environment.IsTerminal) { return null; }
            var console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(Output),
                Ansi = AnsiSupport.Detect,
                ColorSystem = ColorSystemSupport.Detect,
                Interactive = InteractionSupport.Detect,
            });
            return console.Profile.Capabilities.Ansi && console.Profile.Capabilities.Interactive ? console : null;
        }
    }

    private IAnsiConsole CreateConsole()
    {
        bool terminal = Environment.IsTerminal;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        // Off a terminal Spectre assumes 80 columns and would wrap table cells; a pipe or a file wants whole lines.
        if (!terminal) { console.Profile.Width = 240; }
        return console;
    }

    /// <summary>
    /// Opens <paramref name="address"/> through VFIO (or the test environment's opener) with this invocation's roots
    /// and logging; a No-IOMMU group only with <paramref name="allowNoIommu"/>. With <paramref name="shareDmaWith"/>
    /// the device joins that device's container or IOAS, so one DMA pool serves both.
    /// </summary>
    public Devices.IPciDevice OpenDevice(PciAddress address, bool allowNoIommu, Kernel.VfioDevice? shareDmaWith = null)
    {
        var options = new Kernel.VfioOpenOptions
        {
            AllowNoIommu = allowNoIommu,
            SysfsRoot = SysfsRoot,
            ProcRoot = ProcRoot,
            DevRoot = DevRoot,
            LoggerFactory = LoggerFactory,
        };
        var open = Environment.OpenDevice ?? Kernel.VfioDevice.Open;
        return open(address, shareDmaWith is null ? options : options.SharingDmaWith(shareDmaWith));
    }

    /// <summary>
    /// Opens <paramref name="target"/>: a PCI function as <see cref="OpenDevice(PciAddress, bool, Kernel.VfioDevice?)"/>
    /// does, or the device behind a vfio-user socket (the server decides what DMA it may do, so no No-IOMMU consent
    /// is involved).
    /// </summary>
    public Devices.IPciDevice OpenDevice(Commands.DeviceTarget target, bool allowNoIommu)
    {
        if (target.SocketPath is not { } path) { return OpenDevice(target.Address, allowNoIommu); }
        try
        {
            return User.Client.VfioUserDevice.Connect(path);
        }
        catch (IOException e)
        {
            throw new CliException($"{e.Message} (is a vfio-user server, e.g. `vfio serve nvme --socket {path}`, listening there?)",
                ExitCodes.DeviceOrHost, "VfioUserConnect");
        }
    }

    /// <summary>Writes a JSON document to standard output.</summary>
    public void WriteJson<T>(T document, JsonTypeInfo<T> type)
    {
        Output.WriteLine(System.Text.Json.JsonSerializer.Serialize(document, type));
    }

    /// <summary>A line for people on standard output (not markup: printed as is).</summary>
    public void Say(string text) => Output.WriteLine(text);

    /// <summary>A warning on standard error.</summary>
    public void Warn(string text) => Error.WriteLine($"vfio: warning: {text}");
}
