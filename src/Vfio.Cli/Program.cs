using Vfio.Cli;

// The executable is a thin shell: everything, down to which writers are used, is in CliApp so tests run it in-process.
return CliApp.Run(args, Console.Out, Console.Error, new CliEnvironment { IsTerminal = !Console.IsOutputRedirected, OpenBinaryOutput = Console.OpenStandardOutput });
