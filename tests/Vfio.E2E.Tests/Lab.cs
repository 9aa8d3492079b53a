using System.Diagnostics;
using System.Runtime.InteropServices;
using Vfio.Host;

namespace Vfio.E2E.Tests;

/// <summary>
/// What the guest lab tells the suite: which configuration this guest is (noiommu, type1, noiommu-off) and the
/// PCI addresses of its devices. These tests need a guest booted by lab/lab.sh; run them with './run test e2e'.
/// </summary>
internal static partial class Lab
{
    public static string Config => Require("VFIO_LAB_CONFIG");
    public static PciAddress Edu => PciAddress.Parse(Require("VFIO_LAB_EDU"));
    public static PciAddress Edu2 => PciAddress.Parse(Require("VFIO_LAB_EDU2"));

    public static string Require(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } v
            ? v
            : throw new InvalidOperationException($"{name} is not set: these tests run inside the guest lab ('./run test e2e')");

    private static readonly object s_bindLock = new();

    /// <summary>Binds the edu device under test to vfio-pci once per process.</summary>
    public static PciAddress BoundEdu()
    {
        lock (s_bindLock)
        {
            var host = new PciHost();
            if (host.GetDevice(Edu).Driver != "vfio-pci")
            {
                host.BindToVfio(Edu);
            }
            return Edu;
        }
    }

    public static int OpenFdCount() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    [LibraryImport("libc", EntryPoint = "gettid")]
    public static partial int GetTid();

    /// <summary>The kernel's ring buffer, read through dmesg (the host's util-linux, visible in the chroot).</summary>
    public static string Dmesg()
    {
        var psi = new ProcessStartInfo("dmesg") { RedirectStandardOutput = true, UseShellExecute = false };
        using var p = Process.Start(psi)!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return text;
    }

    /// <summary>Runs a command and returns its exit code and combined output.</summary>
    public static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr.Result);
    }

    /// <summary>Path of the probe program built next to this suite.</summary>
    public static string ProbeDll
    {
        get
        {
            string dir = AppContext.BaseDirectory;
            // tests/Vfio.E2E.Tests/bin/<cfg>/net10.0/ -> tests/Vfio.E2E.Probe/bin/<cfg>/net10.0/Vfio.E2E.Probe.dll
            string probe = Path.GetFullPath(Path.Combine(dir, "..", "..", "..", "..", "Vfio.E2E.Probe", "bin",
                new DirectoryInfo(dir).Parent!.Name, "net10.0", "Vfio.E2E.Probe.dll"));
            return File.Exists(probe) ? probe : throw new FileNotFoundException("build tests/Vfio.E2E.Probe first", probe);
        }
    }
}
