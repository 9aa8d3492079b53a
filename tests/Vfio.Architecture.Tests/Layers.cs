using System.Reflection;
using System.Xml.Linq;

namespace Vfio.Architecture.Tests;

/// <summary>
/// The layer order of README "Layers", as data the tests check the built assemblies against. Lowest layer first;
/// each product assembly may reference only the product assemblies listed for it, and inside Vfio.Core each
/// namespace only the namespaces below it.
/// </summary>
internal static class Layers
{
    public const string Core = "Vfio.Core";
    public const string User = "Vfio.User";
    public const string SpecNvme = "Vfio.Spec.Nvme";
    public const string SpecVirtio = "Vfio.Spec.Virtio";
    public const string Net = "Vfio.Net";
    public const string Nvme = "Vfio.Nvme";
    public const string VirtioNet = "Vfio.VirtioNet";
    public const string Igb = "Vfio.Igb";
    public const string Emulation = "Vfio.Emulation";
    public const string Cli = "vfio";

    /// <summary>
    /// Every product assembly (src/) and the product assemblies it may reference. Core is the VFIO layers and the
    /// device abstraction; vfio-user is a transport beside kernel VFIO; the spec assemblies hold one spec each; the NIC
    /// port abstraction (packet pools, INetPort, the driver registry) sits on the device abstraction, below every NIC
    /// driver and knowing none; a driver sees the device abstraction, its spec, and (a NIC driver) the port
    /// abstraction; the models see the server library and the specs, never a
    /// driver (a constant the driver gets wrong must not make the model agree); the CLI is the top.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string[]> AllowedReferences = new Dictionary<string, string[]>
    {
        [Core] = [],
        [User] = [Core],
        [SpecNvme] = [Core],
        [SpecVirtio] = [Core],
        [Net] = [Core],
        [Nvme] = [Core, SpecNvme],
        [VirtioNet] = [Core, SpecVirtio, Net],
        [Igb] = [Core, Net],
        [Emulation] = [Core, User, SpecNvme, SpecVirtio],
        [Cli] = [Core, User, SpecNvme, SpecVirtio, Net, Nvme, VirtioNet, Igb, Emulation],
    };

    /// <summary>
    /// Namespaces of Vfio.Core, lowest first: the root (PciAddress, errno and exceptions, SafeFdHandle, and the
    /// internal Interop class), the OS objects a transport needs, the kernel's network stack as an application sees it
    /// (a TAP interface: NIC drivers may use it to hand frames to the kernel, unlike the transports' OS objects),
    /// sysfs/procfs, DMA memory, the device abstraction, and the kernel VFIO transport on top of it.
    /// </summary>
    public static readonly string[] CoreNamespaces = ["Vfio", "Vfio.Linux", "Vfio.Tap", "Vfio.Host", "Vfio.Dma", "Vfio.Devices", "Vfio.Kernel"];

    public static Assembly Load(string name) => Assembly.Load(new AssemblyName(name));

    /// <summary>The repository root: the folder above this test's output that holds Vfio.slnx.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Vfio.slnx"))) { return dir.FullName; }
            }
            throw new InvalidOperationException($"no Vfio.slnx above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>A project file of src/: its assembly name and the assembly names of the projects it references.</summary>
    public sealed record Project(string Path, string AssemblyName, IReadOnlyList<string> References);

    public static IReadOnlyList<Project> SourceProjects()
    {
        var src = System.IO.Path.Combine(RepositoryRoot, "src");
        return Directory.GetDirectories(src)
            .SelectMany(d => Directory.GetFiles(d, "*.csproj"))
            .Order(StringComparer.Ordinal)
            .Select(Read)
            .ToList();
    }

    private static Project Read(string csproj)
    {
        var doc = XDocument.Load(csproj);
        string name = doc.Descendants("AssemblyName").Select(e => e.Value.Trim()).FirstOrDefault()
            ?? System.IO.Path.GetFileNameWithoutExtension(csproj);
        var refs = doc.Descendants("ProjectReference")
            .Select(e => (string?)e.Attribute("Include") ?? "")
            .Select(r => Read(System.IO.Path.GetFullPath(System.IO.Path.Combine(System.IO.Path.GetDirectoryName(csproj)!, r.Replace('\\', '/')))).AssemblyName)
            .ToList();
        return new Project(csproj, name, refs);
    }
}
