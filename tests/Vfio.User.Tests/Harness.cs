using Vfio.User.Client;
using Vfio.User.Server;

namespace Vfio.User.Tests;

/// <summary>A server on a fresh UNIX socket under the temp directory, and a way to connect clients to it.</summary>
internal sealed class Harness : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _serving;

    public Harness(EmulatedPciDevice device, VfioUserServerOptions? options = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), "vfu-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Directory);
        SocketPath = Path.Combine(Directory, "edu.sock");
        Server = new VfioUserServer(device, options);
        Server.Listen(SocketPath);
        _serving = Task.Run(() => Server.RunAsync(_stop.Token));
    }

    public string Directory { get; }

    public string SocketPath { get; }

    public VfioUserServer Server { get; }

    public VfioUserDevice Connect(VfioUserClientOptions? options = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            try
            {
                return VfioUserDevice.Connect(SocketPath, options);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(10);
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        Server.Dispose();
        _serving.Wait(TimeSpan.FromSeconds(5));
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
