using Vfio.Devices;
using Vfio.Tests.Host;
using Vfio.User.Client;

namespace Vfio.Cli.Tests;

/// <summary><c>vfio serve edu</c>: the emulated edu device over vfio-user, driven by the library's client.</summary>
public sealed class ServeTests : IDisposable
{
    private readonly FakeSysfs _fs = new();
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "vfio-serve-" + Guid.NewGuid().ToString("N")[..12]);

    public ServeTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        _fs.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task Serve_edu_once_answers_one_client_and_exits()
    {
        string socket = Path.Combine(_dir, "edu.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "edu", "--socket", socket, "--once"), TestContext.Current.CancellationToken);

        uint id;
        using (var dev = ConnectWithRetry(socket))
        using (var bar0 = dev.OpenRegion(PciRegion.Bar0))
        {
            Assert.Equal(0x1234, dev.Config.VendorId);
            id = bar0.Read32(0);
        }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();
        Assert.Equal(0x010000edu, id);
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains($"Serving edu (1234:11e8) over vfio-user on {socket}", r.Out, StringComparison.Ordinal);
        Assert.Contains("Served 1 client(s).", r.Out, StringComparison.Ordinal);
        Assert.False(File.Exists(socket));
    }

    [Fact]
    public async Task Serve_edu_once_with_json_prints_only_its_document()
    {
        string socket = Path.Combine(_dir, "edu-json.sock");
        var run = Task.Run(() => new CliRunner(_fs).Run("serve", "edu", "--socket", socket, "--once", "--json"), TestContext.Current.CancellationToken);
        using (var dev = ConnectWithRetry(socket)) { Assert.Equal(0x11e8, dev.Config.DeviceId); }
        var r = (await run.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken)).AssertNoStackTrace();

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        var d = Json.Parse(r.Out);
        Assert.Equal("edu", d.GetProperty("device").GetString());
        Assert.Equal("1234", d.GetProperty("vendorId").GetString());
        Assert.Equal("11e8", d.GetProperty("deviceId").GetString());
        Assert.Equal(socket, d.GetProperty("socket").GetString());
        Assert.Equal(1, d.GetProperty("clients").GetInt32());
        Assert.False(d.GetProperty("stopped").GetBoolean());
    }

    [Fact]
    public void Serve_without_a_socket_is_a_usage_error()
    {
        var r = new CliRunner(_fs).Run("serve", "edu").AssertNoStackTrace();
        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("--socket", r.Err, StringComparison.Ordinal);
    }

    private static VfioUserDevice ConnectWithRetry(string socket)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try
            {
                return VfioUserDevice.Connect(socket);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
    }
}
