using Vfio.Tests.Host;

namespace Vfio.Cli.Tests;

/// <summary><c>vfio net pktgen|fwd</c>: argument validation; bad arguments exit 1 before any device is opened.</summary>
public sealed class NetTests : IDisposable
{
    private const string PortA = "0000:00:04.0";
    private const string PortB = "0000:00:05.0";
    private readonly FakeSysfs _fs = new();
    private readonly CliRunner _cli;
    private int _opens;

    public NetTests()
    {
        _cli = new CliRunner(_fs)
        {
            OpenDevice = (_, _) =>
            {
                _opens++;
                throw new InvalidOperationException("the device must not be opened");
            },
        };
    }

    public void Dispose() => _fs.Dispose();

    private CliResult Run(params string[] args) => _cli.Run(args).AssertNoStackTrace();

    private void AssertUsage(CliResult r)
    {
        Assert.True(r.ExitCode == ExitCodes.Usage, $"exit {r.ExitCode}: {r.Out}{r.Err}");
        Assert.StartsWith("vfio: ", r.Err, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--count 0")]
    [InlineData("--count -5")]
    [InlineData("--size 10")]
    [InlineData("--size 1515")]
    [InlineData("--size abc")]
    [InlineData("--burst 0")]
    [InlineData("--burst 100000")]
    [InlineData("0000:00:04.0 0000:00:05.0")]
    public void Pktgen_bad_arguments_are_usage_errors(string args)
    {
        string[] rest = args.Length == 0 ? [] : args.Split(' ');
        string[] all = args.Length == 0 ? ["net", "pktgen"] : args.StartsWith("--", StringComparison.Ordinal) ? ["net", "pktgen", PortA, .. rest] : ["net", "pktgen", .. rest];
        AssertUsage(Run(all));
    }

    [Theory]
    [InlineData("")]
    [InlineData("0000:00:04.0")]
    [InlineData("0000:00:04.0 00:zz.0")]
    [InlineData("0000:00:04.0 0000:00:04.0")]
    [InlineData("0000:00:04.0 00:04.0")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t -1")]
    [InlineData("0000:00:04.0 0000:00:05.0 -t x")]
    [InlineData("0000:00:04.0 0000:00:05.0 --seconds 100000")]
    [InlineData("0000:00:04.0 0000:00:05.0 --burst 0")]
    [InlineData("0000:00:04.0 0000:00:05.0 --burst 513")]
    public void Fwd_bad_arguments_are_usage_errors(string args)
    {
        string[] rest = args.Length == 0 ? [] : args.Split(' ');
        AssertUsage(Run(["net", "fwd", .. rest]));
    }

    [Fact]
    public void Bad_arguments_with_json_print_an_error_document()
    {
        var r = Run("net", "fwd", PortA, PortB, "-t", "0", "--json");
        AssertUsage(r);
        var e = Json.Parse(r.Out).GetProperty("error");
        Assert.Equal(ExitCodes.Usage, e.GetProperty("exitCode").GetInt32());
    }

    [Fact]
    public void Help_lists_both_commands()
    {
        var r = Run("net", "--help");
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("pktgen", r.Out, StringComparison.Ordinal);
        Assert.Contains("fwd", r.Out, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }
}
