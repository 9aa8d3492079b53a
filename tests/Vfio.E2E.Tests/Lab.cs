using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Vfio.Host;

[assembly: Xunit.v3.Parallelization(Mode = Xunit.Sdk.ParallelMode.None)] // tests share the guest's devices

namespace Vfio.E2E.Tests;

/// <summary>
/// What the guest lab (lab/lab.sh) tells a test about its guest, through environment variables,
/// and small sysfs readers. Outside a lab guest every accessor throws, so a lab test run on the
/// host fails with a message saying why instead of passing vacuously.
/// </summary>
public static partial class Lab
{
    /// <summary>Trait values: the lab configuration a test class is written for.</summary>
    public const string NoIommu = "noiommu", Type1 = "type1", NoIommuOff = "noiommu-off";

    /// <summary>
    /// The configuration family the guest belongs to (noiommu, type1, noiommu-off): the 6.12 guests run the suites
    /// of their family (612-noiommu runs the noiommu tests, 612-iommufd and 612-type1 the type1 tests).
    /// </summary>
    public static string Config => Env("VFIO_LAB_CONFIG");

    /// <summary>Trait values of tests written for one 6.12 guest only (lab/lab.sh configurations of the same name).</summary>
    public const string K612NoIommu = "612-noiommu", K612Iommufd = "612-iommufd", K612Type1 = "612-type1";

    /// <summary>
    /// The 6.12 guests whose /dev/vfio/vfio iommufd serves (CONFIG_IOMMUFD_VFIO_CONTAINER): No-IOMMU groups (noiommu
    /// family), and the vIOMMU with the group path forced (type1 family).
    /// </summary>
    public const string K612CompatNoIommu = "612-compat-noiommu", K612CompatType1 = "612-compat-type1";

    /// <summary>What serves a group-opened device's container in this guest: "iommufd" on the 612-compat guests, "vfio" elsewhere.</summary>
    public static string ExpectedContainer => Name is K612CompatNoIommu or K612CompatType1 ? "iommufd" : "vfio";

    /// <summary>
    /// Trait cost=cli-over-drivers: the vfio command driving the NVMe and virtio-net drivers (and serving vfio-user).
    /// Under TCG every vfio start costs seconds, and what these classes reach in the kernel the driver suites of the
    /// same guest already exercise, so only the 6.1 guests run them (lab/lab.sh); the 6.12 guests keep the CLI
    /// classes that read kernel state (bind, noiommu status, info with its mode and container).
    /// </summary>
    public const string CliOverDrivers = "cli-over-drivers";

    /// <summary>
    /// Trait cost=debian-kernel: needs what Debian's 6.1 kernel has and the lab's minimal 6.12 builds leave out (the
    /// ext4 filesystem), so only the 6.1 guests run it (lab/lab.sh).
    /// </summary>
    public const string DebianKernel = "debian-kernel";

    /// <summary>The guest configuration's own name (612-iommufd, ...; the family name on the 6.1 guests).</summary>
    public static string Name => Environment.GetEnvironmentVariable("VFIO_LAB_NAME") is { Length: > 0 } n ? n : Config;

    /// <summary>
    /// How VfioDevice.Open opens a device with an IOMMU in this guest: through the cdev + iommufd on the 6.12 guest that
    /// offers it and does not force the group, through the group + type1 container otherwise (VFIO_LAB_OPEN_MODE).
    /// </summary>
    public static Vfio.Kernel.VfioMode ExpectedMode => Config is NoIommu or IgbConfig
        ? Vfio.Kernel.VfioMode.NoIommu
        : Environment.GetEnvironmentVariable("VFIO_LAB_OPEN_MODE") == "iommufd" ? Vfio.Kernel.VfioMode.Iommufd : Vfio.Kernel.VfioMode.Type1;

    /// <summary>The mode name the CLI reports for <see cref="ExpectedMode"/> (noiommu, type1, iommufd).</summary>
    public static string ExpectedModeName => ExpectedMode.ToString().ToLowerInvariant();
    /// <summary>A writable directory whose files reach the host (lab.sh run --out / e2e OUTDIR).</summary>
    public static string OutDir => Env("VFIO_LAB_OUT");
    /// <summary>QEMU edu device: the device under test.</summary>
    public static string Edu => Env("VFIO_LAB_EDU");
    /// <summary>A second edu device that nothing binds.</summary>
    public static string Edu2 => Env("VFIO_LAB_EDU2");
    public static string Nvme => Env("VFIO_LAB_NVME");

    /// <summary>
    /// The nvme in NVM subsystem vfio-lab-subsys3 (noiommu e2e only): serial VFIOLAB0003, nsid 1 attached and nsid 2
    /// detached, 16 MiB each; QOM path /machine/peripheral/nvme3. Only the namespace management tests use it.
    /// </summary>
    public static string Nvme3 => Env("VFIO_LAB_NVME3");
    public static string Net0 => Env("VFIO_LAB_NET0");
    public static string Net1 => Env("VFIO_LAB_NET1");

    /// <summary>
    /// The lab configuration that boots the noiommu guest on QEMU 10 with two Intel 82576 ports (QEMU 7.2 has no igb
    /// model) and runs the igb tests (trait lab=igb) only.
    /// </summary>
    public const string IgbConfig = "igb";

    /// <summary>The two Intel 82576 (igb) ports of the igb guest (or one started with VFIO_LAB_IGB=1 on QEMU 10), on one hub.</summary>
    public static string Igb0 => Env("VFIO_LAB_IGB0");
    public static string Igb1 => Env("VFIO_LAB_IGB1");

    public const string NoIommuParam = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";

    static string Env(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException($"{name} is not set: this test runs only inside the guest lab (lab/lab.sh e2e)");

    /// <summary>Fails unless this process runs in the guest configuration <paramref name="config"/>.</summary>
    public static void RequireConfig(string config) =>
        Assert.True(Config == config, $"test for lab config '{config}' ran in '{Config}'");

    public static string DeviceDir(string bdf) => Path.Combine("/sys/bus/pci/devices", bdf);

    /// <summary>A sysfs attribute such as "vendor" ("0x1234\n") as a number.</summary>
    public static uint ReadHex(string bdf, string attribute)
    {
        var text = File.ReadAllText(Path.Combine(DeviceDir(bdf), attribute)).Trim();
        Assert.StartsWith("0x", text);
        return uint.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    /// <summary>The name of the driver bound to a device, or null.</summary>
    public static string? Driver(string bdf)
    {
        var link = new FileInfo(Path.Combine(DeviceDir(bdf), "driver"));
        return link.LinkTarget is { } target ? Path.GetFileName(target) : null;
    }

    /// <summary>The device's IOMMU group number, or null when it has none.</summary>
    public static string? IommuGroup(string bdf)
    {
        var link = new FileInfo(Path.Combine(DeviceDir(bdf), "iommu_group"));
        return link.LinkTarget is { } target ? Path.GetFileName(target) : null;
    }

    public static string ReadTrimmed(string path) => File.ReadAllText(path).Trim();

    /// <summary>The edu device under test as a typed address.</summary>
    public static PciAddress EduAddress => PciAddress.Parse(Edu);

    /// <summary>The never-bound edu device as a typed address.</summary>
    public static PciAddress Edu2Address => PciAddress.Parse(Edu2);

    private static readonly object s_bindLock = new();

    /// <summary>Binds the edu device under test to vfio-pci (once; later calls find it bound).</summary>
    public static PciAddress BoundEdu()
    {
        lock (s_bindLock)
        {
            var host = new PciHost();
            if (host.GetDevice(EduAddress).Driver != PciHost.VfioPciDriver)
            {
                host.BindToVfio(EduAddress);
            }
            return EduAddress;
        }
    }

    /// <summary>
    /// Descriptors this process holds on VFIO objects (containers, groups, device fds, iommufd) and eventfds: what the library
    /// opens. The runtime's own descriptors come and go (finalizers, pipes of child processes) and are not counted.
    /// </summary>
    public static int OpenFdCount()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int n = 0;
        foreach (var fd in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            string? target = new FileInfo(fd).LinkTarget;
            if (target is not null && (target.StartsWith("/dev/vfio", StringComparison.Ordinal) || target == "/dev/iommu"
                || target.StartsWith("anon_inode:[vfio", StringComparison.Ordinal)
                || target == "anon_inode:[eventfd]"))
            {
                n++;
            }
        }
        return n;
    }

    /// <summary>
    /// Records a measured figure: in the test's output and in faults-&lt;guest&gt;.txt of the lab's output directory (one
    /// file per guest configuration: guests run side by side and share that directory).
    /// </summary>
    public static void Report(string line)
    {
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        File.AppendAllText(Path.Combine(OutDir, $"faults-{Name}.txt"), line + Environment.NewLine);
    }

    /// <summary>The calling thread's kernel id (what the kernel logs as task_pid_nr(current)).</summary>
    [LibraryImport("libc", EntryPoint = "gettid")]
    public static partial int GetTid();

    /// <summary>
    /// Runs one QMP command in the QEMU that runs this guest (lab/qmp-bridge.py: a request file in the shared run
    /// directory, the answer in another) and returns its "return" value; a QMP error fails the test with QEMU's words.
    /// </summary>
    public static System.Text.Json.JsonElement Qmp(string command, System.Text.Json.Nodes.JsonObject? arguments = null)
    {
        string spool = Env("VFIO_LAB_QMP");
        string name = $"{Environment.ProcessId}-{Interlocked.Increment(ref s_qmpRequests)}";
        var request = new System.Text.Json.Nodes.JsonObject { ["execute"] = command };
        if (arguments is not null) { request["arguments"] = arguments; }
        string tmp = Path.Combine(spool, $".tmp-{name}"), answer = Path.Combine(spool, $"resp-{name}.json");
        File.WriteAllText(tmp, request.ToJsonString());
        File.Move(tmp, Path.Combine(spool, $"req-{name}.json"));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!File.Exists(answer))
        {
            if (DateTime.UtcNow > deadline) { throw new TimeoutException($"no QMP answer to {command} within 30 s (is lab/qmp-bridge.py running?)"); }
            Thread.Sleep(50);
        }
        var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(answer)).RootElement;
        File.Delete(answer);
        if (doc.TryGetProperty("error", out var error)) { throw new InvalidOperationException($"QMP {command}: {error}"); }
        return doc.GetProperty("return").Clone();
    }

    private static int s_qmpRequests;

    /// <summary>The kernel's ring buffer, through dmesg (the host's util-linux, visible in the chroot).</summary>
    public static string Dmesg() => Run("dmesg").Output;

    /// <summary>Runs a program and returns its exit code and its standard output followed by standard error.</summary>
    public static (int ExitCode, string Output) Run(string file, params string[] args)
    {
        var (code, stdout, stderr) = RunSplit(file, args);
        return (code, stdout + stderr);
    }

    /// <summary>Runs a program and returns its exit code, standard output and standard error apart.</summary>
    public static (int ExitCode, string StdOut, string StdErr) RunSplit(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) { psi.ArgumentList.Add(a); }
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    /// <summary>
    /// Binds the NVMe device to vfio-pci (the guest's nvme driver holds it at boot, and again after a remove and
    /// rescan); later calls find it bound.
    /// </summary>
    public static PciAddress BoundNvme()
    {
        lock (s_bindLock)
        {
            var address = PciAddress.Parse(Nvme);
            var host = new PciHost();
            if (host.GetDevice(address).Driver != PciHost.VfioPciDriver)
            {
                host.BindToVfio(address);
            }
            return address;
        }
    }

    /// <summary>Makes sure the second edu device is bound to no driver (tests that bind it put it back too).</summary>
    public static PciAddress UnboundEdu2()
    {
        lock (s_bindLock)
        {
            var host = new PciHost();
            if (host.GetDevice(Edu2Address).Driver is not null)
            {
                host.Unbind(Edu2Address);
            }
            return Edu2Address;
        }
    }

    /// <summary>The probe program (tests/Vfio.E2E.Probe), built beside this suite in the same configuration.</summary>
    public static string ProbeDll
    {
        get
        {
            string dir = AppContext.BaseDirectory.TrimEnd('/');
            string configuration = new DirectoryInfo(dir).Parent!.Name;
            string probe = Path.GetFullPath(Path.Combine(dir, "..", "..", "..", "..", "Vfio.E2E.Probe", "bin", configuration, "net10.0", "Vfio.E2E.Probe.dll"));
            return File.Exists(probe) ? probe : throw new FileNotFoundException("build tests/Vfio.E2E.Probe first ('./run test' does)", probe);
        }
    }
}
